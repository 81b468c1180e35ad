"""A running daemon's answer to a plain `token`: a private Unix socket beside the state.

The quick `token` path (quick_token.py) otherwise reads the keyring itself: a D-Bus connection
and jeepney's import, most of its cost. A daemon that serves the keyring already holds both, so
the quick path asks it first and reads the keyring itself only when no daemon answers.

Where: ``<state>/_token.sock``. The state directory is the one place every caller of a user
finds the same way (layout.py: ``$HOME`` if it is ours, else the password database), and it is
0700 and ours (safe_files.py's policy, checked by both ends). ``$XDG_RUNTIME_DIR`` is not: cron's
``env -i`` and ``su -`` callers have none, and ``/run/user/<uid>`` exists only with a logind
session or lingering. A path longer than a Unix socket address holds (108 bytes) is reached
through ``/proc/self/fd`` and a descriptor of the directory.

Protocol version 1: one request and one answer per connection, each one JSON line.

    request  {"v": 1, "account": NAME, "bus": DBUS_SESSION_BUS_ADDRESS}
    answer   {"v": 1, "document": {...}}   PUBLIC_KEYS of the stored document, never the
                                           refresh token or the client secret
             {"v": 1, "refused": WHY}      WHY: a word, never a secret

The answer is only what the keyring item holds: whether it may be printed stays the quick
path's decision, by exactly its rules. Bounded: a request of at most MAX_REQUEST bytes, an
answer of at most MAX_ANSWER; the client waits CLIENT_TIMEOUT in all, the server SERVER_TIMEOUT
per connection. Both ends check the other's uid with ``SO_PEERCRED``: the server answers its own
uid only (root too is refused), the client believes a server of its own uid only. Linux only
(``SO_PEERCRED``); elsewhere the quick path reads the store itself.

``json``, ``os``, ``contextlib``, ``_socket`` and ``struct`` at import: the client is on the
quick path, measured in milliseconds (``socket``'s wrapper module costs a millisecond more).
"""

from __future__ import annotations

import _socket
import contextlib
import json
import os
import stat
import struct
import sys
import time
from collections.abc import Callable, Iterator, Mapping

from tvmaniac_refreshd.storage.layout import token_socket
from tvmaniac_refreshd.storage.quick_record import STAMP_KEYS

# Not typing's: its import costs the quick `token` path 2 ms (mypy and ruff read it alike).
TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket

VERSION = 1
# What the quick path needs of a stored document, and nothing more.
PUBLIC_KEYS = (*STAMP_KEYS, "access_token", "token_type")
MAX_REQUEST = 4096
MAX_ANSWER = 16384
CLIENT_TIMEOUT = 0.5  # then the keyring, as if no daemon ran
SERVER_TIMEOUT = 1.0  # a client that does not finish its request in this long is dropped
# sun_path is 108 bytes on Linux, with its terminating NUL.
MAX_PATH = 107
_UCRED = struct.Struct("3i")  # pid, uid, gid

# Outcomes of one connection, for the daemon's log (never the answer).
ANSWERED = "answered"
OTHER_UID = "other uid"
BAD_REQUEST = "bad request"
GONE = "client gone"


def supported(platform: str = sys.platform) -> bool:
    return platform.startswith("linux")


def socket_path(state: str) -> str:
    """Return the socket's path in the state directory ``state``."""
    return token_socket(state)


@contextlib.contextmanager
def _address(path: str) -> Iterator[str]:
    """Yield an address for ``path`` that fits a Unix socket address: itself if short enough,
    else ``/proc/self/fd/N/<name>`` through a descriptor of its directory, held meanwhile."""
    if len(os.fsencode(path)) <= MAX_PATH:
        yield path
        return
    directory = os.open(
        os.path.dirname(path), os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    )
    try:
        yield f"/proc/self/fd/{directory}/{os.path.basename(path)}"
    finally:
        os.close(directory)


def peer_uid(connection: _socket.socket) -> int:
    """Return the uid of the process at the other end of a connected Unix socket."""
    credentials = connection.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, _UCRED.size)
    return int(_UCRED.unpack(credentials)[1])


def public_document(text: str) -> dict[str, object] | None:
    """Return PUBLIC_KEYS of a stored document's JSON text, or None if it is no JSON object."""
    try:
        document = json.loads(text)
    except ValueError:
        return None
    if not isinstance(document, dict):
        return None
    return {key: document[key] for key in PUBLIC_KEYS if key in document}


def _line(connection: _socket.socket, limit: int, deadline: float) -> bytes:
    """Read one line of at most ``limit`` bytes before ``deadline`` (time.monotonic).

    Raises:
        OSError: the peer is gone, or the time ran out (TimeoutError).
        ValueError: the line is too long, or the peer closed before its end.
    """
    received = b""
    while b"\n" not in received:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        connection.settimeout(remaining)
        chunk = connection.recv(4096)
        if not chunk:
            raise ValueError("closed before the end of the line")
        received += chunk
        if len(received) > limit:
            raise ValueError("line too long")
    line, _, rest = received.partition(b"\n")
    if rest:
        raise ValueError("more than one line")
    return line


def _ours(path: str) -> bool:
    """Whether ``path`` is a socket of ours that nobody else may open (safe_files.py's rule)."""
    try:
        info = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISSOCK(info.st_mode) and info.st_uid == os.geteuid() and not info.st_mode & 0o077


def ask(
    state: str, account: str, bus: str, *, timeout: float = CLIENT_TIMEOUT
) -> dict[str, object] | None:
    """Return the daemon's copy of ``account``'s document (PUBLIC_KEYS), or None: no daemon,
    a stale socket, a daemon of another uid, one that refuses, is too slow, or speaks another
    version. ``state`` must already be known to be a private directory of ours."""
    path = socket_path(state)
    request = json.dumps({"v": VERSION, "account": account, "bus": bus}).encode() + b"\n"
    if not (supported() and _ours(path)) or len(request) > MAX_REQUEST:
        return None
    deadline = time.monotonic() + timeout
    connection = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    try:
        connection.settimeout(timeout)
        with _address(path) as address:
            connection.connect(address)
        if peer_uid(connection) != os.geteuid():
            return None
        connection.sendall(request)
        message = json.loads(_line(connection, MAX_ANSWER, deadline))
    except (OSError, ValueError, RecursionError):  # RecursionError: JSON nested too deep
        return None
    finally:
        connection.close()
    if not isinstance(message, dict) or message.get("v") != VERSION:
        return None
    document = message.get("document")
    return document if isinstance(document, dict) else None


Respond = Callable[[str, str], "Mapping[str, object] | str"]


def serve_connection(
    connection: _socket.socket,
    respond: Respond,
    *,
    peer: Callable[[_socket.socket], int] = peer_uid,
    timeout: float = SERVER_TIMEOUT,
) -> str:
    """Answer one client on ``connection`` and return the outcome, for the log.

    ``respond(account, bus)`` returns the document's PUBLIC_KEYS, or a word saying why not.
    Another uid gets nothing but a refusal; so does a request that is late, too long or not
    version 1. The connection is not closed here.
    """
    deadline = time.monotonic() + timeout
    try:
        if peer(connection) != os.geteuid():
            outcome, reply = OTHER_UID, None
        else:
            outcome, reply = _respond(_line(connection, MAX_REQUEST, deadline), respond)
    except (OSError, ValueError, RecursionError):  # RecursionError: JSON nested too deep
        outcome, reply = BAD_REQUEST, None
    answer: dict[str, object] = {"v": VERSION}
    if reply is None:
        answer["refused"] = outcome
    else:
        answer["document"] = reply
    data = json.dumps(answer).encode() + b"\n"
    if len(data) > MAX_ANSWER:
        outcome = "too long"
        data = json.dumps({"v": VERSION, "refused": outcome}).encode() + b"\n"
    try:
        connection.settimeout(max(deadline - time.monotonic(), 0.01))
        connection.sendall(data)
    except OSError:
        return GONE
    return outcome


def _respond(line: bytes, respond: Respond) -> tuple[str, dict[str, object] | None]:
    """Return the outcome of a request line and, if answered, the document to send."""
    request = json.loads(line)
    if not isinstance(request, dict) or request.get("v") != VERSION:
        return BAD_REQUEST, None
    account, bus = request.get("account"), request.get("bus")
    if not (isinstance(account, str) and isinstance(bus, str)):
        return BAD_REQUEST, None
    reply = respond(account, bus)
    if isinstance(reply, str):
        return reply, None
    return ANSWERED, {key: reply[key] for key in PUBLIC_KEYS if key in reply}


class Listener:
    """The daemon's end: the socket bound in the state directory, listening."""

    def __init__(self, path: str, server: socket.socket) -> None:
        self.path = path
        self.server = server
        self._inode = os.lstat(path).st_ino

    @classmethod
    def bind(cls, state: str) -> Listener | str:
        """Bind the socket in ``state`` (a private directory of ours, created if need be), or
        return why not: another daemon answers there, the path is too long, not Linux.

        A socket left by a daemon that died is replaced; anything else at its name is left.

        Raises:
            UnsafeLocation: the state directory is not safely ours.
            OSError: it cannot be created, or the socket cannot be bound.
        """
        import socket  # noqa: PLC0415 (the daemon's end: not on the quick path)

        from tvmaniac_refreshd.storage.safe_files import ensure_private_dir  # noqa: PLC0415

        if not supported():
            return "not on this system"
        ensure_private_dir(state)
        path = socket_path(state)
        if os.path.lexists(path):
            if not _ours(path):
                return f"{path} is there and is not a socket of ours"
            if _answers(path):
                return "another daemon answers there"
            os.unlink(path)  # a dead daemon's; a new one taking it meanwhile fails to bind
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with _address(path) as address:
                server.bind(address)
            os.chmod(path, 0o600)  # the directory keeps others out already; the file says so too
            server.listen(16)
            return cls(path, server)
        except OSError:
            server.close()
            raise

    def accept(self) -> socket.socket:
        """Wait for the next client; OSError once closed."""
        return self.server.accept()[0]

    def close(self) -> None:
        """Stop listening (an ``accept`` waiting in another thread returns) and remove the
        socket, unless another daemon has put its own there since."""
        with contextlib.suppress(OSError):
            self.server.shutdown(_socket.SHUT_RDWR)
        self.server.close()
        with contextlib.suppress(OSError):
            if os.lstat(self.path).st_ino == self._inode:
                os.unlink(self.path)


def _answers(path: str) -> bool:
    """Whether a process listens on the socket at ``path``."""
    probe = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    try:
        probe.settimeout(CLIENT_TIMEOUT)
        with _address(path) as address:
            probe.connect(address)
    except OSError:
        return False
    finally:
        probe.close()
    return True
