"""journald's native protocol in pure Python: structured entries without libsystemd.

One datagram per entry goes to journald's socket (see systemd's JOURNAL_NATIVE_PROTOCOL.md).
The socket is non-blocking: when journald falls behind, entries are counted as dropped rather
than stalling the daemon, and nothing here ever raises into the code that logs.
"""

from __future__ import annotations

import array
import contextlib
import datetime as dt
import errno
import fcntl
import os
import re
import socket
import struct
import threading
from collections.abc import Mapping, MutableMapping
from typing import Any

from tvmaniac_refreshd.core.locations import APP

JOURNAL_SOCKET = "/run/systemd/journal/socket"
SYSLOG_IDENTIFIER = APP

# syslog priorities as journald expects them in PRIORITY (sd-daemon(3)).
PRIORITIES: Mapping[str, int] = {
    "debug": 7,
    "info": 6,
    "notice": 5,
    "warning": 4,
    "warn": 4,
    "error": 3,
    "exception": 3,
    "err": 3,
    "critical": 2,
    "fatal": 2,
    "failure": 2,
}
DEFAULT_PRIORITY = 6

# Fields journal_fields() fills itself; an event key that maps onto one is renamed so it
# cannot overwrite them.
RESERVED_FIELDS = frozenset(
    {"MESSAGE", "PRIORITY", "SYSLOG_IDENTIFIER", "EVENT", "TRACEBACK"}
    | {"CODE_FILE", "CODE_LINE", "CODE_FUNC"}
)
# Event keys with a journal name that differs from their upper-cased form.
FIELD_RENAMES: Mapping[str, str] = {
    "outcome": "REFRESH_RESULT",
    "exception": "TRACEBACK",
    "pathname": "CODE_FILE",
    "lineno": "CODE_LINE",
    "func_name": "CODE_FUNC",
}
# Keys that are journal metadata, not part of the human-readable MESSAGE.
_NOT_IN_MESSAGE = frozenset({"pathname", "lineno", "func_name", "timestamp"})

_VALID_KEY = re.compile(r"[A-Z0-9][A-Z0-9_]*")
_INVALID_KEY_CHARS = re.compile(r"[^A-Z0-9_]")
# journald ignores longer field names (JOURNAL_FIELD_NAME_MAX in sd-journal).
MAX_KEY_LENGTH = 64
# What a truncated entry may weigh in total: far below any datagram limit.
TRUNCATED_SIZE = 48 * 1024
TRUNCATION_MARK = "…[truncated]"

_LE64 = struct.Struct("<Q")


def stderr_is_journal(environ: Mapping[str, str], fd: int = 2) -> bool:
    """Whether ``fd`` is the stream journald gave this process (``$JOURNAL_STREAM`` = dev:ino).

    The variable alone is not enough: it is inherited by children whose stderr was redirected.
    """
    value = environ.get("JOURNAL_STREAM", "")
    dev, sep, ino = value.partition(":")
    if not sep:
        return False
    try:
        expected = (int(dev), int(ino))
        stat = os.fstat(fd)
    except (ValueError, OSError):
        return False
    return (stat.st_dev, stat.st_ino) == expected


def sanitize_key(key: str) -> str | None:
    """The journal field name for ``key``, or ``None`` when nothing usable is left.

    journald silently ignores lower-case names and reserves ``_``-prefixed ones for itself.
    """
    name = _INVALID_KEY_CHARS.sub("_", key.upper()).lstrip("_")[:MAX_KEY_LENGTH]
    return name if _VALID_KEY.fullmatch(name) else None


def serialize(fields: Mapping[str, str]) -> bytes:
    """Encode ``fields`` as one native-protocol entry; invalid keys are renamed or skipped."""
    parts: list[bytes] = []
    for key, value in fields.items():
        name = sanitize_key(key)
        if name is None:
            continue
        data = str(value).encode("utf-8", "replace")
        if b"\n" in data:
            # A newline would end the field in the simple form, hence the length-prefixed one.
            parts.append(name.encode() + b"\n" + _LE64.pack(len(data)) + data + b"\n")
        else:
            parts.append(name.encode() + b"=" + data + b"\n")
    return b"".join(parts)


def truncate_fields(fields: Mapping[str, str], budget: int = TRUNCATED_SIZE) -> dict[str, str]:
    """Shorten the longest values so that the entry fits ``budget`` bytes, small ones intact."""
    result = dict(fields)
    # Fixed overhead of a field: name, separator, a possible length prefix and newline.
    remaining = budget - sum(len(key) + 10 for key in fields)
    pending = sorted(fields, key=lambda key: len(fields[key].encode("utf-8", "replace")))
    for index, key in enumerate(pending):
        share = max(remaining // (len(pending) - index), 0)
        data = fields[key].encode("utf-8", "replace")
        if len(data) > share:
            keep = max(share - len(TRUNCATION_MARK.encode()), 0)
            result[key] = data[:keep].decode("utf-8", "ignore") + TRUNCATION_MARK
            data = result[key].encode()
        remaining -= len(data)
    return result


class JournalSender:
    """Sends entries to journald over a non-blocking datagram socket; never raises.

    ``dropped`` counts entries that never reached the socket (journald behind, or gone);
    ``truncated`` counts entries that only fitted once shortened.
    """

    def __init__(self, path: str = JOURNAL_SOCKET) -> None:
        self.path = path
        self.dropped = 0
        self.truncated = 0
        self._sock: socket.socket | None = None
        # Loggers are called from scheduler threads too; the counters must stay exact.
        self._lock = threading.Lock()

    def _socket(self) -> socket.socket:
        if self._sock is None:
            kind = socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK
            sock = socket.socket(socket.AF_UNIX, kind)
            sock.setblocking(False)
            self._sock = sock
        return self._sock

    def send(self, fields: Mapping[str, str]) -> bool:
        """Send one entry; ``True`` when journald got it (possibly truncated)."""
        try:
            return self._send(fields)
        except Exception:  # a log call must never take the daemon down
            self._count_drop()
            return False

    def _send(self, fields: Mapping[str, str]) -> bool:
        payload = serialize(fields)
        try:
            self._socket().sendto(payload, self.path)
        except OSError as error:
            if error.errno != errno.EMSGSIZE:
                # EAGAIN (buffer full), ENOENT/ECONNREFUSED (no journald): drop, don't wait.
                self._count_drop()
                return False
        else:
            return True
        if self._send_memfd(payload):
            return True
        try:
            self._socket().sendto(serialize(truncate_fields(fields)), self.path)
        except OSError:
            self._count_drop()
            return False
        with self._lock:
            self.truncated += 1
        return True

    def _send_memfd(self, payload: bytes) -> bool:
        """Pass an entry too big for a datagram as a sealed memfd, the way libsystemd does."""
        try:
            fd = os.memfd_create("journal-entry", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        except (AttributeError, OSError):
            return False
        try:
            view = memoryview(payload)
            while view:
                view = view[os.write(fd, view) :]
            _seal(fd)
            rights = array.array("i", [fd]).tobytes()
            self._socket().sendmsg(
                [], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, rights)], 0, self.path
            )
        except OSError:
            return False
        finally:
            os.close(fd)
        return True

    def _count_drop(self) -> None:
        with self._lock:
            self.dropped += 1

    def close(self) -> None:
        """Close the socket; a later send opens a new one."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _seal(fd: int) -> None:
    # journald accepts the memfd only once it cannot change under it; older kernels or
    # Pythons without F_ADD_SEALS get an unsealed fd, which journald may refuse.
    add_seals = getattr(fcntl, "F_ADD_SEALS", None)
    if add_seals is None:
        return
    seals = 0
    for name in ("F_SEAL_SEAL", "F_SEAL_SHRINK", "F_SEAL_GROW", "F_SEAL_WRITE"):
        seals |= getattr(fcntl, name, 0)
    with contextlib.suppress(OSError):
        fcntl.fcntl(fd, add_seals, seals)


def format_value(value: object) -> str:
    """A field value as text: ISO 8601 for datetimes, ``true``/``false`` for booleans."""
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return str(value)


def logfmt_pair(key: str, value: str, *, keep_newlines: bool = False) -> str:
    """``key=value``, quoted like structlog's LogfmtRenderer; newlines escaped unless kept.

    A journal entry keeps them (``keep_newlines``): journalctl shows a multi-line MESSAGE as
    indented lines, where a literal ``\\n`` would only be noise.
    """
    quote = not value or any(c in value for c in ' ="\n\r')
    if quote:
        value = value.replace("\\", "\\\\").replace('"', '\\"')
    if not keep_newlines:
        # Escaped, not kept: a raw newline would split the record on a stream into several.
        value = value.replace("\n", "\\n").replace("\r", "\\r")
    return f'{key}="{value}"' if quote else f"{key}={value}"


def _message_value(key: str, raw: object, value: str) -> str:
    """A field's value as MESSAGE shows it: unix times (``*_at``) as ISO 8601 UTC."""
    if key.endswith("_at") and isinstance(raw, int | float) and not isinstance(raw, bool):
        try:
            moment = dt.datetime.fromtimestamp(int(raw), tz=dt.UTC)
        except (OverflowError, OSError, ValueError):
            return value
        return moment.isoformat().replace("+00:00", "Z")
    return value


def ordered_items(event_dict: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """The event's fields, ``account`` first (the key people scan for), ``timestamp`` last."""
    first = [(key, value) for key, value in event_dict.items() if key == "account"]
    middle = [
        (key, value) for key, value in event_dict.items() if key not in {"account", "timestamp"}
    ]
    last = [(key, value) for key, value in event_dict.items() if key == "timestamp"]
    return first + middle + last


def journal_fields(
    _logger: object, method_name: str, event_dict: MutableMapping[str, Any]
) -> tuple[tuple[dict[str, str]], dict[str, Any]]:
    """The last structlog processor on the journal path: an event dict to journal fields.

    Returns ``((fields,), {})`` so that structlog calls ``JournalLogger.msg(fields)``.
    """
    event = format_value(event_dict.pop("event", ""))
    level = str(event_dict.pop("level", method_name)).lower()
    fields: dict[str, str] = {
        "MESSAGE": "",
        "PRIORITY": str(PRIORITIES.get(level, DEFAULT_PRIORITY)),
        "SYSLOG_IDENTIFIER": SYSLOG_IDENTIFIER,
        "EVENT": event,
    }
    words = [event] if event else []
    for key, raw in ordered_items(event_dict):
        value = format_value(raw)
        name = FIELD_RENAMES.get(key) or sanitize_key(key)
        if key == "exception":
            # journalctl shows only MESSAGE by default: keep the error's last line visible there.
            last = value.strip().splitlines()[-1:] or [""]
            words.append(logfmt_pair("exception", last[0]))
        elif key not in _NOT_IN_MESSAGE:
            # The text names a value as its field does (outcome= is REFRESH_RESULT=), so what
            # one reads in MESSAGE is what one types after `journalctl`.
            shown = name.lower() if key in FIELD_RENAMES and name else key
            text = _message_value(key, raw, value)
            words.append(logfmt_pair(shown, text, keep_newlines=True))
        if name is None or key == "timestamp":
            continue
        if name in RESERVED_FIELDS and key not in FIELD_RENAMES:
            name = f"FIELD_{name}"
        fields[name] = value
    fields["MESSAGE"] = " ".join(words)
    return (fields,), {}


class JournalLogger:
    """A structlog logger that hands each entry from ``journal_fields`` to a ``JournalSender``."""

    def __init__(self, sender: JournalSender) -> None:
        self.sender = sender

    def msg(self, fields: Mapping[str, str]) -> None:
        """Send one entry."""
        self.sender.send(fields)

    log = debug = info = warn = warning = msg
    fatal = failure = err = error = critical = exception = msg


class JournalLoggerFactory:
    """structlog ``logger_factory`` producing ``JournalLogger``s that share one sender."""

    def __init__(self, sender: JournalSender | None = None) -> None:
        self.sender = sender if sender is not None else JournalSender()

    def __call__(self, *args: object) -> JournalLogger:
        """Return a logger; ``args`` (the logger name) are ignored, journald has its own."""
        return JournalLogger(self.sender)
