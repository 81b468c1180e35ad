"""Canned HTTP responses: the value every layer returns and the server writes out."""

from __future__ import annotations

import dataclasses
import json

JSON_TYPE = "application/json; charset=utf-8"
HTML_TYPE = "text/html; charset=UTF-8"
TEXT_TYPE = "text/plain; charset=UTF-8"

# Doorkeeper sends these on token responses; clients must not cache tokens (#48).
NO_STORE: tuple[tuple[str, str], ...] = (("Cache-Control", "no-store"), ("Pragma", "no-cache"))


@dataclasses.dataclass(frozen=True)
class Reply:
    """A complete response.

    `app` marks responses from Trakt's Rails app, which carry X-Request-Id and
    X-Runtime; pages from Cloudflare or a proxy lack them, and clients may tell
    the two apart that way.
    """

    status: int
    body: bytes = b""
    content_type: str | None = JSON_TYPE
    headers: tuple[tuple[str, str], ...] = ()
    app: bool = True
    reason: str | None = None


def json_reply(
    status: int,
    payload: object,
    headers: tuple[tuple[str, str], ...] = (),
    *,
    app: bool = True,
) -> Reply:
    """A JSON body, compact like Rails renders it."""
    body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
    return Reply(status, body, JSON_TYPE, headers, app)


def empty_reply(status: int, headers: tuple[tuple[str, str], ...] = ()) -> Reply:
    """An empty body that still claims JSON, the trap Trakt's own playground warns about."""
    return Reply(status, b"", JSON_TYPE, headers)
