"""HTML and text pages that Cloudflare or a proxy puts in front of Trakt's app."""

from __future__ import annotations

import secrets
from http import HTTPStatus

from trakt_emulator.replies import HTML_TYPE, JSON_TYPE, TEXT_TYPE, Reply, json_reply

CF_ERRORS = {
    520: "Web server is returning an unknown error",
    521: "Web server is down",
    522: "Connection timed out",
    523: "Origin is unreachable",
    524: "A timeout occurred",
    525: "SSL handshake failed",
    526: "Invalid SSL certificate",
}
UPSTREAM_ERRORS = {
    502: "Bad Gateway",
    503: "Service Temporarily Unavailable",
    504: "Gateway Time-out",
}


def cf_ray() -> str:
    """A value shaped like Cloudflare's CF-Ray header."""
    return f"{secrets.token_hex(8)}-AMS"


def _html(
    status: int, body: str, headers: tuple[tuple[str, str], ...] = (), reason: str | None = None
) -> Reply:
    return Reply(status, body.encode("utf-8"), HTML_TYPE, headers, app=False, reason=reason)


_BLOCKED = """<!DOCTYPE html>
<html><head><title>Attention Required! | Cloudflare</title></head>
<body><div id="cf-wrapper"><h1>Sorry, you have been blocked</h1>
<h2>You are unable to access trakt.tv</h2>
<p>Cloudflare Ray ID: <strong>{ray}</strong></p></div></body></html>
"""
_CF_ERROR = """<!DOCTYPE html>
<html><head><title>trakt.tv | {code}: {title}</title></head>
<body><h1>{title}</h1><span>Error code {code}</span>
<p>Cloudflare Ray ID: <strong>{ray}</strong></p></body></html>
"""
_BANNED = """<!DOCTYPE html>
<html><head><title>Access denied | trakt.tv used Cloudflare to restrict access</title></head>
<body><h1>Error 1015</h1><h2>You are being rate limited</h2>
<p>The owner of this website (trakt.tv) has banned you temporarily from accessing this website.</p>
</body></html>
"""
_UPSTREAM = """<html><head><title>{code} {title}</title></head>
<body><center><h1>{code} {title}</h1></center><hr><center>nginx</center></body></html>
"""
_MAINTENANCE = """<!DOCTYPE html>
<html><head><title>Trakt is down for maintenance</title></head>
<body><h1>We'll be right back</h1><p>Trakt is down for scheduled maintenance.</p></body></html>
"""


def blocked() -> Reply:
    """The WAF's 403 for a request without a User-Agent."""
    return _html(403, _BLOCKED.format(ray=secrets.token_hex(8)))


def cloudflare_error(code: int) -> Reply:
    """Cloudflare's own 52x page: the origin did not answer properly."""
    title = CF_ERRORS[code]
    body = _CF_ERROR.format(code=code, title=title, ray=secrets.token_hex(8))
    return _html(code, body, reason=title)


def rate_limited(retry_after: int | None) -> Reply:
    """Cloudflare's 429: terse text with Retry-After, or the 1015 ban page without it."""
    if retry_after is None:
        return _html(429, _BANNED)
    headers = (("Retry-After", str(retry_after)),)
    return Reply(429, b"error code: 1015", TEXT_TYPE, headers, app=False)


def server_error(code: int, headers: tuple[tuple[str, str], ...]) -> Reply:
    """A 5xx: the Rails app answers 500 in JSON; gateways answer the others in HTML."""
    if code == 500:
        payload = {"error": "server_error", "error_description": "Internal Server Error"}
        return json_reply(500, payload, headers)
    title = UPSTREAM_ERRORS.get(code) or _phrase(code)
    return _html(code, _UPSTREAM.format(code=code, title=title), headers)


def _phrase(code: int) -> str:
    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return "Error"


def maintenance(code: int) -> Reply:
    """An HTML page where JSON was expected, e.g. a maintenance or captive-portal page."""
    return _html(code, _MAINTENANCE)


def filler_json(size: int) -> Reply:
    """A syntactically valid JSON object of exactly `size` bytes (at least 16)."""
    prefix, suffix = b'{"padding":"', b'"}'
    pad = max(size - len(prefix) - len(suffix), 0)
    return Reply(200, prefix + b"x" * pad + suffix, JSON_TYPE)
