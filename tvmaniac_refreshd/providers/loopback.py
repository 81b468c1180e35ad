"""The loopback HTTP listener of the browser login: exactly the addresses the redirect URI
names, one thread per connection with a read timeout, and only this user's connections.

- ``localhost`` is both 127.0.0.1 and ::1 on the same port (browsers try ::1 first), and the
  login fails if either is taken: a port left to another user would receive the code.
- Each connection is served in its own thread with a timeout, so that an idle one (a browser's
  speculative preconnect, or another user's) delays nothing; the caller's deadline is checked
  by the accepting loop, never inside a handler.
- On Linux a connection is answered only if this user's process opened it (``peer_uid``); any
  other user's gets a 403 before a byte of the request is read.
"""

from __future__ import annotations

import errno
import http.server
import selectors
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass

from tvmaniac_refreshd.core.errors import LoginFailed
from tvmaniac_refreshd.providers.peer_uid import peer_uid

# Enough for a browser on a loaded machine to send one request line and its headers.
CONNECTION_TIMEOUT = 10.0
# How often the accepting loop looks at the clock and at whether the login is done.
POLL_INTERVAL = 0.2
# Attempts to find a port free in both families when any port will do.
PORT_ATTEMPTS = 10
REFUSED = b"HTTP/1.0 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


@dataclass(frozen=True)
class Page:
    """One answer of the listener."""

    status: int
    body: bytes = b""
    location: str | None = None


def url_host(host: str) -> str:
    """Return ``host`` as it stands in a URL: an IPv6 literal in brackets."""
    return f"[{host}]" if ":" in host else host


def _addresses(host: str) -> list[tuple[socket.AddressFamily, str]]:
    if host == "localhost":
        return [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")]
    if ":" in host:
        return [(socket.AF_INET6, host)]
    return [(socket.AF_INET, host)]


def _bind(family: socket.AddressFamily, address: str, port: int) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # As http.server does: a port in TIME_WAIT from the last login may be taken again,
        # but never one that another socket listens on.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((address, port))
        sock.listen(16)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def listen_loopback(host: str, port: int) -> list[socket.socket]:
    """Listen on every address ``host`` names, all on one port (``port``, or a free one if 0).

    Raises:
        LoginFailed: an address cannot be had (taken by another program, or no such address).
    """
    addresses = _addresses(host)
    for attempt in range(PORT_ATTEMPTS if port == 0 else 1):
        sockets: list[socket.socket] = []
        chosen = port
        try:
            for family, address in addresses:
                try:
                    sock = _bind(family, address, chosen)
                except OSError as exc:
                    # localhost on a machine without IPv6: no browser can reach ::1 either.
                    absent = exc.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT)
                    if host == "localhost" and family == socket.AF_INET6 and absent:
                        continue
                    if port == 0 and sockets and attempt + 1 < PORT_ATTEMPTS:
                        raise _TryAnotherPort from None
                    raise LoginFailed(
                        f"cannot listen on {url_host(address)}:{chosen} for the redirect: "
                        f"{exc.strerror or exc}; another program (or user) holds that port. "
                        "Close it, or choose another port in the redirect URI"
                    ) from None
                sockets.append(sock)
                chosen = sock.getsockname()[1]
        except _TryAnotherPort:
            for sock in sockets:
                sock.close()
            continue
        except BaseException:
            for sock in sockets:
                sock.close()
            raise
        return sockets
    raise AssertionError("unreachable")  # pragma: no cover


class _TryAnotherPort(Exception):
    pass


class _Handler(http.server.BaseHTTPRequestHandler):
    """Parses one request and sends the listener's answer to it."""

    timeout = CONNECTION_TIMEOUT  # StreamRequestHandler sets it on the socket
    server: LoopbackServer  # type: ignore[assignment]

    def do_GET(self) -> None:
        page = self.server.answer(self.path)
        if page.status >= 400:
            self.send_error(page.status)
            return
        self.send_response(page.status)
        if page.location is not None:
            self.send_header("Location", page.location)
        self.send_header("Cache-Control", "no-store")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(page.body)))
        self.end_headers()
        self.wfile.write(page.body)

    def log_message(self, format: str, *args: object) -> None:
        """Stay quiet: the query string holds the authorization code."""


class LoopbackServer:
    """Serves ``answer`` on the loopback addresses of one port until told to stop."""

    def __init__(
        self, host: str, port: int, answer: Callable[[str], Page], *, owner_uid: int | None
    ) -> None:
        """``owner_uid``: answer only connections opened by this uid (None: no check).

        Raises:
            LoginFailed: the addresses cannot be listened on.
        """
        self.answer = answer
        self._owner = owner_uid
        self._sockets = listen_loopback(host, port)
        self.port: int = self._sockets[0].getsockname()[1]
        self._lock = threading.Lock()
        self._refused: list[int | None] = []  # the uids whose connections were turned away

    def close(self) -> None:
        for sock in self._sockets:
            sock.close()

    def __enter__(self) -> LoopbackServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def serve_until(
        self, done: threading.Event, *, deadline: float, clock: Callable[[], float]
    ) -> bool:
        """Accept connections until ``done`` is set (True) or ``clock`` reaches ``deadline``
        (False). Handlers run in their own threads: none of them can hold this loop."""
        with selectors.DefaultSelector() as selector:
            for sock in self._sockets:
                selector.register(sock, selectors.EVENT_READ)
            while not done.is_set():
                left = deadline - clock()
                if left <= 0:
                    return False
                for key, _ in selector.select(min(left, POLL_INTERVAL)):
                    listener = key.fileobj
                    assert isinstance(listener, socket.socket)  # noqa: S101  # registered above
                    try:
                        connection, peer = listener.accept()
                    except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                        continue
                    threading.Thread(
                        target=self._serve_one, args=(connection, peer), daemon=True
                    ).start()
        return True

    def _serve_one(self, connection: socket.socket, peer: tuple[str, int]) -> None:
        with connection:
            connection.settimeout(CONNECTION_TIMEOUT)
            try:
                if self._owner is not None:
                    ours = connection.getsockname()
                    uid = peer_uid((ours[0], ours[1]), (peer[0], peer[1]))
                    if uid != self._owner:
                        with self._lock:
                            self._refused.append(uid)
                        connection.sendall(REFUSED)
                        return
                _Handler(connection, peer, self)  # type: ignore[arg-type]
            except OSError:  # the peer went away or stayed silent past the timeout
                return

    def take_refused(self) -> list[int | None]:
        """Return the uids refused since the last call."""
        with self._lock:
            refused, self._refused = self._refused, []
        return refused
