"""Logging through structlog: readable on a terminal, one key=value line per event otherwise.

As a daemon (``daemon=True``) records go to journald as structured entries when stderr is
journald's stream, or else one ``<N>``-prefixed line each, so that whoever captures stderr
(journald, a log file) keeps the priority and never splits a record. Any other verb whose stderr
is journald's stream (the timer's ``refresh --all``) logs the same structured entries.

Every record passes a redaction processor: fields with secret names are masked, and any value
containing a registered secret (a token, a client secret) has it cut out, whatever its key.

structlog (and the asyncio it imports) costs a fast command such as ``token`` more than all its
real work, so it is imported only when the first line is emitted; outside the daemon,
``configure_logging`` only records the setup, and that first line applies it.
"""

from __future__ import annotations

import bisect
import io
import logging
import os
import re
import sys
import threading
from collections.abc import Callable, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any, TextIO, cast

from tvmaniac_refreshd.core.locations import APP

if TYPE_CHECKING:
    from structlog.typing import FilteringBoundLogger

    from tvmaniac_refreshd.core.journal import JournalSender

REDACTED = "[redacted]"
SECRET_KEYS = frozenset(
    {
        "access_token",
        "refresh_token",
        "client_secret",
        "authorization",
        "device_code",
        "code",
        "token",
        "password",
        "secret",
    }
)
# Shorter secrets could be ordinary words inside other text: they are redacted only where they
# stand as a whole word. Every real token and secret is longer.
MIN_SECRET_LENGTH = 8
# What a token's characters can be (RFC 6750 b64token, plus '_'): a short secret next to one
# of these is part of a longer word, not the secret standing alone.
_WORD_CHARS = r"A-Za-z0-9\-._~+/"
# The secrets to cut out of every log line, error and status (``_Known`` below).
_secrets_lock = threading.Lock()
# Secrets without an account: a command's own, a few. A daemon registers every token under its
# account (``register_secret(..., account=...)``), its older ones replaced, so it does not grow
# without bound either (_Known).
MAX_KNOWN_SECRETS = 512
# The setup configure_logging recorded but did not apply yet (see the module docstring).
_pending: Callable[[], None] | None = None
# C0 and C1 controls (ESC starts terminal escape sequences), DEL, the Unicode line and
# paragraph separators and the bidirectional overrides that make text read other than it is.
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
# The same but the newline, which our own messages use (a config's list of problems).
_CONTROLS_BUT_NEWLINE = re.compile(
    "[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)
# The level of that setup: a record below it is dropped without loading structlog at all.
_pending_level = logging.NOTSET
# The levels of structlog's filtering bound logger's methods (the ones this project calls).
_METHOD_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "exception": logging.ERROR,
    "critical": logging.CRITICAL,
}
# Whether stderr is journald's stream: plain lines written there then carry a ``<N>`` prefix.
_stderr_is_journal = False


class _Known:
    """Every registered secret, and the redaction made of them.

    ``redaction`` is replaced, never changed in place: log lines are redacted on many threads
    while refreshes add tokens (iterating a set another thread grows raises RuntimeError), so
    ``redact_text`` takes one snapshot. Its long secrets are sorted longest first, because a
    secret that happens to be part of a token must not be cut out of it first and leave the rest
    of the token readable; a new one is inserted in place (a copy of the tuple, microseconds),
    so registering is cheap at any number of accounts.

    Secrets of an account (``account=``) are held by (account, kind): the current one and the
    one it replaced (a rotated access token stays valid until it expires). They are never
    capped: as many as the accounts, so a daemon with thousands redacts every live token, and
    one registered again is found at once. Secrets without an account (a command's one-offs)
    are kept newest last, the oldest forgotten past MAX_KNOWN_SECRETS.
    """

    def __init__(self) -> None:
        self.redaction: tuple[tuple[str, ...], re.Pattern[str] | None] = ((), None)
        self.loose: dict[str, None] = {}  # insertion-ordered: the oldest first
        self.accounts: dict[tuple[str, str], tuple[str, ...]] = {}
        self.holders: dict[str, int] = {}  # how many of the above hold each value
        self.short: tuple[str, ...] = ()
        # The long secrets by their first MIN_SECRET_LENGTH characters, so that a line is
        # searched for the few that start somewhere in it, not for each of thousands. Changed
        # in place (only looked up, never iterated, by redact_text), its values swapped whole.
        self.index: dict[str, tuple[str, ...]] = {}

    def register(self, value: str, account: str | None, kind: str) -> None:
        if account is None:
            if value in self.loose:
                return
            self.loose[value] = None
            self._hold(value)
            if len(self.loose) > MAX_KNOWN_SECRETS:
                oldest = next(iter(self.loose))
                del self.loose[oldest]
                self._release(oldest)
            return
        held = self.accounts.get((account, kind), ())
        if value in held:
            return
        self.accounts[(account, kind)] = (value, *held[:1])
        self._hold(value)
        if len(held) > 1:
            self._release(held[1])

    def _hold(self, value: str) -> None:
        count = self.holders.get(value, 0)
        self.holders[value] = count + 1
        if count:
            return
        long_secrets, pattern = self.redaction
        if len(value) >= MIN_SECRET_LENGTH:
            at = bisect.bisect_left(long_secrets, _longest_first(value), key=_longest_first)
            self.redaction = ((*long_secrets[:at], value, *long_secrets[at:]), pattern)
            start = value[:MIN_SECRET_LENGTH]
            self.index[start] = (*self.index.get(start, ()), value)
        else:
            self._set_short((*self.short, value))

    def _release(self, value: str) -> None:
        count = self.holders.pop(value) - 1
        if count:
            self.holders[value] = count
            return
        long_secrets, pattern = self.redaction
        if len(value) >= MIN_SECRET_LENGTH:
            at = long_secrets.index(value)
            self.redaction = (long_secrets[:at] + long_secrets[at + 1 :], pattern)
            start = value[:MIN_SECRET_LENGTH]
            rest = tuple(secret for secret in self.index.get(start, ()) if secret != value)
            if rest:
                self.index[start] = rest
            else:
                self.index.pop(start, None)
        else:
            self._set_short(tuple(secret for secret in self.short if secret != value))

    def _set_short(self, short: tuple[str, ...]) -> None:
        self.short = short
        pattern = None
        if short:
            alternatives = "|".join(
                re.escape(secret) for secret in sorted(short, key=len, reverse=True)
            )
            pattern = re.compile(f"(?<![{_WORD_CHARS}])(?:{alternatives})(?![{_WORD_CHARS}])")
        self.redaction = (self.redaction[0], pattern)


def _longest_first(text: str) -> tuple[int, str]:
    """The order of the long secrets: longest first, then (for overlaps of equal length, one
    order whichever way they were found) alphabetical."""
    return -len(text), text


_known = _Known()


def register_secret(value: str | None, *, account: str | None = None, kind: str = "") -> None:
    """Remember ``value`` so that no later log line, error or status can show it.

    With ``account``, it is that account's secret of ``kind`` (e.g. "access"), kept while the
    process runs and until a second newer one of the same kind replaces it (``_Known``).
    """
    if value:
        with _secrets_lock:
            _known.register(value, account, kind)


# Past this many long secrets (a daemon of many accounts), a line is searched through the index.
INDEXED_FROM = 64


def redact_text(text: str) -> str:
    """Return ``text`` with every registered secret replaced."""
    long_secrets, short_pattern = _known.redaction  # one snapshot: swapped, never mutated
    if len(long_secrets) >= INDEXED_FROM:
        # The same secrets, longest first, as the loop below would find them in ``text``.
        long_secrets = tuple(sorted(_present(text, _known.index), key=_longest_first))
    for secret in long_secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    if short_pattern is not None:
        text = short_pattern.sub(REDACTED, text)
    return text


def _present(text: str, index: Mapping[str, tuple[str, ...]]) -> set[str]:
    """Return the long secrets that occur in ``text``, by the index of their beginnings."""
    found: set[str] = set()
    for at in range(len(text) - MIN_SECRET_LENGTH + 1):
        candidates = index.get(text[at : at + MIN_SECRET_LENGTH])
        if candidates:
            found.update(secret for secret in candidates if text.startswith(secret, at))
    return found


def strip_controls(text: str) -> str:
    """Return ``text`` with control characters replaced by ``?`` (server text, before showing)."""
    return _CONTROLS.sub("?", text)


def shown(text: str) -> str:
    """Return ``text`` fit to print or store: no registered secret, no control character but
    the newline our own multi-line messages use.

    Server text never brings a newline this far: an error code is RFC 6749 text or dropped
    (providers/http.py), and other server text passes ``strip_controls`` where it is read.
    """
    return redact_text(_CONTROLS_BUT_NEWLINE.sub("?", text))


def _redact_value(value: object) -> object:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {key: _redact_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(item) for item in value]
    if isinstance(value, BaseException):
        return redact_text(f"{type(value).__name__}: {value}")
    return value


def redact(
    _logger: object, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A structlog processor: mask secret fields, and secrets inside any other value."""
    for key in list(event_dict):
        if key.lower() in SECRET_KEYS:
            event_dict[key] = REDACTED
        else:
            event_dict[key] = _redact_value(event_dict[key])
    return event_dict


def priority_line(_logger: object, method_name: str, event_dict: MutableMapping[str, Any]) -> str:
    """A structlog renderer: ``<N>event key=value ...`` on exactly one line (sd-daemon(3))."""
    from tvmaniac_refreshd.core.journal import (  # noqa: PLC0415  # deferred with structlog
        DEFAULT_PRIORITY,
        PRIORITIES,
        format_value,
        logfmt_pair,
        ordered_items,
    )

    event = format_value(event_dict.pop("event", ""))
    level = str(event_dict.pop("level", method_name)).lower()
    priority = PRIORITIES.get(level, DEFAULT_PRIORITY)
    words = [logfmt_pair("event", event)[len("event=") :]] if event else []
    words += [logfmt_pair(key, format_value(value)) for key, value in ordered_items(event_dict)]
    return f"<{priority}>" + " ".join(words)


def _is_journal_stream(stream: TextIO, environ: Mapping[str, str]) -> bool:
    from tvmaniac_refreshd.core.journal import stderr_is_journal  # noqa: PLC0415

    try:
        fd = stream.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):
        return False
    return stderr_is_journal(environ, fd)


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, OSError, ValueError):
        return False


# An interactive command without -v shows no log record, only the human sentence (``say=``)
# a warning or an error carries for the person at the terminal.
QUIET = logging.WARNING


def configure_logging(
    verbosity: int = 0,
    *,
    stream: TextIO | None = None,
    quiet: bool = False,
    daemon: bool = False,
    environ: Mapping[str, str] | None = None,
    journal: JournalSender | None = None,
) -> None:
    """Set up structlog for this process.

    ``verbosity`` 0 shows info (when ``quiet`` and not on journald's stream: no record at all,
    for an interactive command says what happened in its own sentences; on journald's stream,
    a timer's oneshot, every info entry is kept as the record of what happened), 1 or more
    shows debug.
    ``daemon`` picks the service outputs: native journald entries when ``stream`` is journald's
    (per ``$JOURNAL_STREAM`` in ``environ``), else ``<N>``-prefixed lines on ``stream``. Without
    ``daemon``, a ``stream`` that is journald's gets the native entries too.
    ``journal`` replaces the default sender (another socket path, or to read its counters).
    """
    global _pending, _pending_level, _stderr_is_journal  # noqa: PLW0603  # one setup per process
    _pending, _pending_level = None, logging.NOTSET
    out = stream if stream is not None else sys.stderr
    env = os.environ if environ is None else environ
    # Checked only when the variable is there: the check imports the journal module.
    _stderr_is_journal = "JOURNAL_STREAM" in env and _is_journal_stream(out, env)
    if verbosity > 0:
        level = logging.DEBUG
    elif quiet and not _stderr_is_journal:
        # On a terminal or a pipe an interactive command speaks in its own sentences. In the
        # journal (a timer's oneshot), info entries are the record of what happened: a
        # refresh's REFRESH_RESULT= must be there in timer mode as it is in daemon mode.
        level = QUIET
    else:
        level = logging.INFO
    if daemon:
        _configure_daemon(out, level, env, journal)
        return
    _pending_level = level
    if _stderr_is_journal:
        # A oneshot under systemd: the daemon's fields and priorities, loaded on first use.
        _pending = lambda: _configure_daemon(out, level, env, journal)  # noqa: E731
        return
    tty = out.isatty()  # asked now: the stream may be closed or replaced by the first line
    spoken = quiet and verbosity <= 0
    _pending = lambda: _configure_console(out, level, tty=tty, spoken=spoken)  # noqa: E731


def journal_prefix(priority: int) -> str:
    """``<N>`` for a plain line written to stderr when that is journald's stream, else ``""``.

    journald reads the prefix as the line's priority (``SyslogLevelPrefix=``, on by default), so
    an error printed by a oneshot shows up under ``journalctl -p err`` too.
    """
    return f"<{priority}>" if _stderr_is_journal else ""


def _timestamper(*, for_people: bool) -> Any:  # noqa: ANN401  # a structlog processor
    import structlog  # noqa: PLC0415  # deferred: see the module docstring

    from tvmaniac_refreshd.core.times import stamp_for_people  # noqa: PLC0415

    return stamp_for_people if for_people else structlog.processors.TimeStamper(fmt="iso", utc=True)


def spoken_line(_logger: object, method_name: str, event_dict: MutableMapping[str, Any]) -> str:
    """A structlog renderer for interactive commands without -v: a record's ``say`` sentence as
    one of the command's own lines (``tvmaniac-refreshd: warning: ...``); a record without one
    is not shown."""
    import structlog  # noqa: PLC0415  # deferred with the renderer

    say = event_dict.get("say")
    if not say:
        raise structlog.DropEvent
    level = str(event_dict.get("level", method_name)).lower()
    return f"tvmaniac-refreshd: {level}: {say}"


def _configure_console(out: TextIO, level: int, *, tty: bool, spoken: bool = False) -> None:
    import structlog  # noqa: PLC0415  # deferred: see the module docstring

    from tvmaniac_refreshd.core.times import moment_fields  # noqa: PLC0415

    renderer: Any
    if spoken:
        renderer = spoken_line
    elif tty:
        renderer = structlog.dev.ConsoleRenderer(colors=False)
    else:
        renderer = structlog.processors.LogfmtRenderer(
            key_order=["timestamp", "level", "event", "account"], drop_missing=True
        )
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            _timestamper(for_people=tty),
            redact,
            moment_fields(for_people=tty),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )


def _configure_daemon(
    out: TextIO, level: int, environ: Mapping[str, str], journal: JournalSender | None
) -> None:
    import structlog  # noqa: PLC0415  # a daemon logs at once; deferring would gain nothing

    from tvmaniac_refreshd.core.journal import (  # noqa: PLC0415
        JournalLoggerFactory,
        JournalSender,
        journal_fields,
    )

    sender = journal if journal is not None else JournalSender()
    # Without the socket (a container without journald's mount) every entry would be lost.
    if _is_journal_stream(out, environ) and os.path.exists(sender.path):
        structlog.configure(
            processors=[
                structlog.processors.add_log_level,
                structlog.processors.CallsiteParameterAdder(
                    [
                        structlog.processors.CallsiteParameter.PATHNAME,
                        structlog.processors.CallsiteParameter.LINENO,
                        structlog.processors.CallsiteParameter.FUNC_NAME,
                    ]
                ),
                # Before redact, so that secrets inside a traceback's text are cut out too.
                structlog.processors.format_exc_info,
                redact,
                journal_fields,
            ],
            wrapper_class=structlog.make_filtering_bound_logger(level),
            logger_factory=JournalLoggerFactory(sender),
            cache_logger_on_first_use=False,
        )
        return
    from tvmaniac_refreshd.core.times import moment_fields  # noqa: PLC0415

    # A person watching `run` on a terminal reads lines, not journald's <N> priority prefixes,
    # and local times; a log collector reads ISO 8601.
    terminal = _is_terminal(out)
    renderer: Any = structlog.dev.ConsoleRenderer(colors=False) if terminal else priority_line
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            _timestamper(for_people=terminal),
            structlog.processors.format_exc_info,
            redact,
            moment_fields(for_people=terminal),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )


class _Logger:
    """A bound logger that imports structlog, and applies a recorded setup, on its first use."""

    __slots__ = ("_bound", "_context")

    def __init__(self, context: dict[str, Any]) -> None:
        self._context = context
        self._bound: Any = None

    def __getattr__(self, name: str) -> Any:  # noqa: ANN401  # forwards to structlog's logger
        if (
            self._bound is None
            and _METHOD_LEVELS.get(name, logging.CRITICAL) < _pending_level
            and "structlog" not in sys.modules  # else someone may have configured it since
        ):
            # Filtered out by the recorded setup, as structlog's filtering logger would: a
            # quiet `refresh` need not pay structlog's import for a line nobody sees.
            return _drop
        if self._bound is None:
            self._bound = _structlog_logger(self._context)
        return getattr(self._bound, name)


def _drop(*_args: object, **_kwargs: object) -> None:
    """A record below the recorded level: nothing to do."""


def _structlog_logger(context: dict[str, Any]) -> Any:  # noqa: ANN401
    global _pending, _pending_level
    import structlog  # noqa: PLC0415  # deferred: see the module docstring

    apply, _pending, _pending_level = _pending, None, logging.NOTSET
    # Someone configured structlog since (a test's capture_logs): theirs wins, as it would
    # have had the setup been applied at once.
    if apply is not None and not structlog.is_configured():
        apply()
    return structlog.get_logger(APP).bind(**context)


def get_logger(**context: Any) -> FilteringBoundLogger:  # noqa: ANN401
    """Return a logger bound to ``context`` (e.g. ``account``); structlog loads on first use."""
    # A proxy that becomes structlog's logger on first use; it forwards every attribute.
    return cast("FilteringBoundLogger", _Logger(context))
