"""Logging through structlog: readable on a terminal, one key=value line per event otherwise.

Every record passes a redaction processor: fields with secret names are masked, and any value
containing a registered secret (a token, a client secret) has it cut out, whatever its key.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

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
# Shorter strings could be ordinary words; every real token and secret is longer.
MIN_SECRET_LENGTH = 8
_known_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """Remember ``value`` so that no later log line, error or status can show it."""
    if value and len(value) >= MIN_SECRET_LENGTH:
        _known_secrets.add(value)


def redact_text(text: str) -> str:
    """Return ``text`` with every registered secret replaced."""
    for secret in _known_secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


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


def configure_logging(
    verbosity: int = 0, *, stream: TextIO | None = None, quiet: bool = False
) -> None:
    """Set up structlog for this process.

    ``verbosity`` 0 shows info (warnings only when ``quiet``), 1 or more shows debug.
    """
    out = stream if stream is not None else sys.stderr
    if verbosity > 0:
        level = logging.DEBUG
    elif quiet:
        level = logging.WARNING
    else:
        level = logging.INFO
    tty = out.isatty()
    renderer: Any
    if tty:
        renderer = structlog.dev.ConsoleRenderer(colors=False)
    else:
        renderer = structlog.processors.LogfmtRenderer(
            key_order=["timestamp", "level", "event", "account"], drop_missing=True
        )
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )


def get_logger(**context: Any) -> Any:  # noqa: ANN401  # structlog's bound loggers are untyped proxies
    """Return a logger bound to ``context`` (e.g. ``account``)."""
    return structlog.get_logger("tvmaniac-refreshd").bind(**context)
