"""sd_notify for the daemon under systemd ``Type=notify``: readiness, status, watchdog, stopping.

The protocol is one datagram on the AF_UNIX socket named by ``$NOTIFY_SOCKET``, which systemd
guarantees stable (sd_notify(3), systemd.io/PORTABILITY_AND_STABILITY). It is sent here in a
few lines instead of through the ``sdnotify`` package, which shipped only as a source archive
(a "legacy setup.py install" warning with Debian 12's pip, an error once pip stops building
without ``wheel``), read ``os.environ`` itself, encoded Latin-1 and swallowed every error.

``WATCHDOG=1`` is sent by a job of the daemon's own scheduler (see runner.py), so a wedged
scheduler stops the pings and systemd restarts the service.
"""

from __future__ import annotations

import math
import os
import socket
import threading
import time
import unicodedata
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Protocol

from tvmaniac_refreshd.core.logs import get_logger, redact_text

STATUS_MAX_CHARS = 200
_ELLIPSIS = "..."


class NotifySender(Protocol):
    """One connection to the notify socket, as the factory returns it."""

    def notify(self, state: str) -> None:
        """Send one datagram; raise ``OSError`` if it could not be sent."""

    def close(self) -> None:
        """Release the socket."""


class _SocketSender:
    """A datagram socket connected to the notify socket at ``address``.

    Non-blocking: if nobody reads the socket (a stuck manager, a test), a message is dropped
    and logged rather than freezing the scheduler thread or shutdown. Close-on-exec, so that
    hooks and other children never inherit it.
    """

    def __init__(self, address: str) -> None:
        sock = socket.socket(
            socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK
        )
        try:
            sock.connect(_unix_address(address))
        except OSError:
            sock.close()
            raise
        self.socket = sock

    def notify(self, state: str) -> None:
        self.socket.send(state.encode("utf-8"))

    def close(self) -> None:
        self.socket.close()


def _unix_address(address: str) -> str:
    if address.startswith("@"):
        # Linux abstract namespace: the name starts with a NUL byte instead of '@'.
        return "\0" + address[1:]
    if address.startswith("/"):
        return address
    # A vsock or relative address is not something we can reach; say so instead of guessing.
    raise OSError(f"unsupported NOTIFY_SOCKET address {address!r}")


def sanitize_status(text: str) -> str:
    """Return ``text`` as one short ASCII line that systemd will accept as a STATUS."""
    # Before truncation, so that no cut could leave part of a secret behind.
    text = redact_text(text)
    # One ASCII line reads the same in every terminal, locale and log that shows it (systemctl
    # status, scripts reading StatusText=); accents are folded (é -> e), the rest becomes '?'.
    folded = "".join(
        ch for ch in unicodedata.normalize("NFKD", text) if not unicodedata.combining(ch)
    )
    chars: list[str] = []
    for ch in folded:
        if not ch.isprintable():
            # systemd splits a notify message at both \n and \r; other controls are no better.
            chars.append(" ")
        elif ch.isascii():
            chars.append(ch)
        else:
            chars.append("?")
    line = " ".join("".join(chars).split())
    if len(line) > STATUS_MAX_CHARS:
        line = line[: STATUS_MAX_CHARS - len(_ELLIPSIS)].rstrip() + _ELLIPSIS
    return line


class Notifier:
    """Sends sd_notify messages when ``NOTIFY_SOCKET`` is set, and does nothing otherwise.

    Every method returns whether the message was handed to the socket. A failure is logged, never
    raised: the daemon must keep refreshing tokens even if systemd cannot be told about it.
    """

    def __init__(
        self,
        environ: Mapping[str, str] | None = None,
        *,
        factory: Callable[[str], NotifySender] = _SocketSender,
        monotonic_ns: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        env = os.environ if environ is None else environ
        self._address = env.get("NOTIFY_SOCKET") or None
        self._factory = factory
        self._monotonic_ns = monotonic_ns
        self._sender: NotifySender | None = None
        # The watchdog pinger thread and the scheduler loop share one connection.
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        """Whether a notify socket was given."""
        return self._address is not None

    def ready(self, status: str | None = None) -> bool:
        """Tell systemd that start-up (or a reload) is complete."""
        if status is None:
            return self._send("READY=1")
        return self._send(f"READY=1\nSTATUS={sanitize_status(status)}")

    def status(self, text: str) -> bool:
        """Show ``text`` (sanitized) in ``systemctl status``."""
        return self._send(f"STATUS={sanitize_status(text)}")

    def reloading(self) -> bool:
        """Tell systemd a reload has begun; ``ready()`` must follow when it is done."""
        # Type=notify-reload (systemd >= 253) refuses RELOADING=1 without this timestamp.
        usec = self._monotonic_ns() // 1000
        return self._send(f"RELOADING=1\nMONOTONIC_USEC={usec}")

    def stopping(self) -> bool:
        """Tell systemd that shutdown has begun."""
        return self._send("STOPPING=1")

    def watchdog(self) -> bool:
        """Reset the systemd watchdog timer."""
        return self._send("WATCHDOG=1")

    def extend_timeout(self, seconds: float) -> bool:
        """Ask for ``seconds`` more before the current start, stop or runtime timeout fires."""
        if not math.isfinite(seconds) or seconds <= 0:
            raise ValueError(f"extend_timeout needs a positive number of seconds, got {seconds!r}")
        return self._send(f"EXTEND_TIMEOUT_USEC={math.ceil(seconds * 1_000_000)}")

    def close(self) -> None:
        """Release the socket; a later message reconnects."""
        with self._lock:
            if self._sender is not None:
                self._sender.close()
                self._sender = None

    def __enter__(self) -> Notifier:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _send(self, state: str) -> bool:
        if self._address is None:
            return False
        with self._lock:
            try:
                if self._sender is None:
                    # Connected on first use rather than at construction, and again after a
                    # failure, so that one lost connection does not silence the rest of the run.
                    self._sender = self._factory(self._address)
                self._sender.notify(state)
            except OSError as exc:
                if self._sender is not None:
                    self._sender.close()
                    self._sender = None
                get_logger().warning("notify.failed", message=state.split("\n", 1)[0], error=exc)
                return False
        return True


def watchdog_interval(environ: Mapping[str, str], pid: int) -> float | None:
    """Return how often to ping (half of ``WATCHDOG_USEC``, in seconds), or None for no watchdog."""
    usec = environ.get("WATCHDOG_USEC", "")
    # str.isdigit alone would let through "٣" and int() would take " 5" or "1_0"; systemd wouldn't.
    if not (usec.isascii() and usec.isdigit()) or int(usec) <= 0:
        return None
    watchdog_pid = environ.get("WATCHDOG_PID")
    # Set but not ours: the watchdog belongs to another process (e.g. our parent) or is unreadable.
    if watchdog_pid is not None and not (
        watchdog_pid.isascii() and watchdog_pid.isdigit() and int(watchdog_pid) == pid
    ):
        return None
    return int(usec) / 2 / 1_000_000
