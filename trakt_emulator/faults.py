"""The edge layer (E0): Cloudflare's User-Agent check and a FIFO queue of one-shot faults."""

from __future__ import annotations

import dataclasses
import random
import threading
from collections.abc import Callable, Mapping

from trakt_emulator import pages
from trakt_emulator.options import Options
from trakt_emulator.replies import Reply

MAX_TRICKLE_SECONDS = 60.0
HUGE_SIZE = 5 * 1024 * 1024


@dataclasses.dataclass(frozen=True)
class Respond:
    """Answer with this response instead of the app's."""

    reply: Reply


@dataclasses.dataclass(frozen=True)
class Drop:
    """Close the connection without sending anything."""


@dataclasses.dataclass(frozen=True)
class Delay:
    """Wait, then let the app answer normally; with `max_seconds`, a random wait in between."""

    seconds: float
    max_seconds: float | None = None

    def draw(self) -> float:
        """This request's wait: fixed, or uniform in [seconds, max_seconds] (a fresh draw each)."""
        if self.max_seconds is None:
            return self.seconds
        return random.uniform(self.seconds, self.max_seconds)


@dataclasses.dataclass(frozen=True)
class Trickle:
    """Send the headers at once, then one body byte per `interval`, giving up at `max_seconds`."""

    reply: Reply
    interval: float
    max_seconds: float


@dataclasses.dataclass(frozen=True)
class Truncate:
    """Promise more bytes in Content-Length than the body has, then close."""

    reply: Reply
    declared_length: int


Action = Respond | Drop | Delay | Trickle | Truncate


@dataclasses.dataclass(frozen=True)
class Decision:
    """What the edge does with one request; `kind` goes into the request log."""

    action: Action
    kind: str


@dataclasses.dataclass
class _Queued:
    spec: dict[str, object]
    action: Action
    path: str | None
    remaining: int


_KEYS: dict[str, frozenset[str]] = {
    "status": frozenset({"code", "retry_after", "error_message"}),
    "cloudflare": frozenset({"code"}),
    "ratelimit": frozenset({"retry_after"}),
    "html": frozenset({"code"}),
    "drop": frozenset(),
    "delay": frozenset({"seconds", "max_seconds"}),
    "trickle": frozenset({"interval", "max_seconds", "size"}),
    "truncate": frozenset({"missing"}),
    "body": frozenset({"code", "content_type", "body", "headers"}),
    "huge": frozenset({"size"}),
}


class EdgeLayer:
    """Runs before any app logic, on every path except the control API."""

    def __init__(self, options: Options) -> None:
        self._options = options
        self._lock = threading.Lock()
        self._queue: list[_Queued] = []

    def add(self, fault: Mapping[str, object]) -> dict[str, object]:
        """Validate and enqueue a fault; returns it with defaults filled in."""
        queued = _compile(fault)
        with self._lock:
            self._queue.append(queued)
        return queued.spec

    def clear(self) -> None:
        """Drop every queued fault."""
        with self._lock:
            self._queue.clear()

    def pending(self) -> list[dict[str, object]]:
        """Queued faults with their remaining counts."""
        with self._lock:
            return [{**queued.spec, "count": queued.remaining} for queued in self._queue]

    def intercept(self, path: str, headers: Mapping[str, str]) -> Decision | None:
        """The edge's verdict on a request, or None to let the app answer."""
        if self._options.cf_require_user_agent and not headers.get("user-agent", "").strip():
            return Decision(Respond(pages.blocked()), "cf_blocked")
        with self._lock:
            for queued in self._queue:
                if queued.path is None or path.startswith(queued.path):
                    queued.remaining -= 1
                    if queued.remaining <= 0:
                        self._queue.remove(queued)
                    return Decision(queued.action, str(queued.spec["kind"]))
        return None


def _compile(fault: Mapping[str, object]) -> _Queued:
    kind = fault.get("kind")
    if not isinstance(kind, str) or kind not in _KEYS:
        raise ValueError(f"fault kind must be one of {', '.join(sorted(_KEYS))}; got {kind!r}")
    unknown = set(fault) - _KEYS[kind] - {"kind", "path", "count"}
    if unknown:
        raise ValueError(f"unknown keys for a {kind!r} fault: {', '.join(sorted(unknown))}")
    path = fault.get("path")
    if path is not None and (not isinstance(path, str) or not path.startswith("/")):
        raise ValueError("fault path must be a string starting with '/'")
    count = _int(fault, "count", 1, 1, 1_000_000)
    action, params = _BUILDERS[kind](fault)
    spec: dict[str, object] = {"kind": kind, "path": path, "count": count, **params}
    return _Queued(spec, action, path, count)


def _status(fault: Mapping[str, object]) -> tuple[Action, dict[str, object]]:
    code = _int(fault, "code", 500, 400, 599)
    retry_after = _opt_int(fault, "retry_after", None)
    message = _opt_str(fault, "error_message")
    headers: list[tuple[str, str]] = []
    if retry_after is not None:
        headers.append(("Retry-After", str(retry_after)))
    if message is not None:
        headers.append(("X-Error-Message", message))
    params: dict[str, object] = {"code": code, "retry_after": retry_after, "error_message": message}
    return Respond(pages.server_error(code, tuple(headers))), params


def _cloudflare(fault: Mapping[str, object]) -> tuple[Action, dict[str, object]]:
    code = _int(fault, "code", 522, min(pages.CF_ERRORS), max(pages.CF_ERRORS))
    return Respond(pages.cloudflare_error(code)), {"code": code}


def _ratelimit(fault: Mapping[str, object]) -> tuple[Action, dict[str, object]]:
    # An absent retry_after means the observed 143 s; an explicit null means the 1015 page.
    retry_after = _opt_int(fault, "retry_after", 143)
    return Respond(pages.rate_limited(retry_after)), {"retry_after": retry_after}


def _html(fault: Mapping[str, object]) -> tuple[Action, dict[str, object]]:
    code = _int(fault, "code", 200, 100, 599)
    return Respond(pages.maintenance(code)), {"code": code}


def _drop(fault: Mapping[str, object]) -> tuple[Action, dict[str, object]]:
    return Drop(), {}


def _delay(fault: Mapping[str, object]) -> tuple[Action, dict[str, object]]:
    seconds = _num(fault, "seconds", 1.0, 0.0, 3600.0)
    if fault.get("max_seconds") is None:
        return Delay(seconds), {"seconds": seconds}
    # A random wait per request (crash tests kill the client at random moments of it).
    max_seconds = _num(fault, "max_seconds", seconds, seconds, 3600.0)
    return Delay(seconds, max_seconds), {"seconds": seconds, "max_seconds": max_seconds}


def _trickle(fault: Mapping[str, object]) -> tuple[Action, dict[str, object]]:
    interval = _num(fault, "interval", 1.0, 0.001, MAX_TRICKLE_SECONDS)
    max_seconds = _num(fault, "max_seconds", MAX_TRICKLE_SECONDS, 0.0, MAX_TRICKLE_SECONDS)
    # Longer than max_seconds/interval bytes by default, so the body is always cut short.
    size = _int(fault, "size", 128, 16, 1_000_000)
    params: dict[str, object] = {"interval": interval, "max_seconds": max_seconds, "size": size}
    return Trickle(pages.filler_json(size), interval, max_seconds), params


def _truncate(fault: Mapping[str, object]) -> tuple[Action, dict[str, object]]:
    missing = _int(fault, "missing", 100, 1, 1_000_000)
    reply = pages.filler_json(64)
    return Truncate(reply, len(reply.body) + missing), {"missing": missing}


def _huge(fault: Mapping[str, object]) -> tuple[Action, dict[str, object]]:
    size = _int(fault, "size", HUGE_SIZE, 16, 64 * 1024 * 1024)
    return Respond(pages.filler_json(size)), {"size": size}


def _raw_body(fault: Mapping[str, object]) -> tuple[Action, dict[str, object]]:
    code = _int(fault, "code", 200, 100, 599)
    content_type = _opt_str(fault, "content_type", "application/json")
    body = _opt_str(fault, "body", "")
    raw_headers = fault.get("headers", {})
    if not isinstance(raw_headers, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in raw_headers.items()
    ):
        raise ValueError("body fault headers must map strings to strings")
    headers = tuple((str(k), str(v)) for k, v in raw_headers.items())
    reply = Reply(code, (body or "").encode("utf-8"), content_type, headers)
    params: dict[str, object] = {
        "code": code,
        "content_type": content_type,
        "body": body,
        "headers": dict(headers),
    }
    return Respond(reply), params


_BUILDERS: dict[str, Callable[[Mapping[str, object]], tuple[Action, dict[str, object]]]] = {
    "status": _status,
    "cloudflare": _cloudflare,
    "ratelimit": _ratelimit,
    "html": _html,
    "drop": _drop,
    "delay": _delay,
    "trickle": _trickle,
    "truncate": _truncate,
    "body": _raw_body,
    "huge": _huge,
}


def _int(fault: Mapping[str, object], key: str, default: int, low: int, high: int) -> int:
    value = fault.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ValueError(f"fault {key!r} must be an integer in [{low}, {high}]; got {value!r}")
    return value


def _opt_int(fault: Mapping[str, object], key: str, default: int | None) -> int | None:
    if fault.get(key, default) is None:
        return None
    return _int(fault, key, default or 0, 0, 86_400 * 30)


def _num(fault: Mapping[str, object], key: str, default: float, low: float, high: float) -> float:
    value = fault.get(key, default)
    if not isinstance(value, int | float) or isinstance(value, bool) or not low <= value <= high:
        raise ValueError(f"fault {key!r} must be a number in [{low}, {high}]; got {value!r}")
    return float(value)


def _opt_str(fault: Mapping[str, object], key: str, default: str | None = None) -> str | None:
    value = fault.get(key, default)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"fault {key!r} must be a string; got {value!r}")
    return value
