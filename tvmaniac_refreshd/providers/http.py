"""The HTTP boundary of every provider: the only module that uses httpx.

It knows no provider's dialect (that is ``trakt.py`` and ``oauth2.py``); the words providers
use for the RFC's outcomes are translated by ``dialects.py`` as the error code is read. Every
httpx exception and every response status is translated here, once, into the project's errors
(see errors.py). Bodies are read with a size cap and an overall deadline, so neither a huge nor
a trickling response can hold a command or the daemon.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import re
import ssl
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from tvmaniac_refreshd import __version__
from tvmaniac_refreshd.config.settings import HttpSettings
from tvmaniac_refreshd.core.errors import (
    AccountLocked,
    ClientRejected,
    ProviderIncompatible,
    ProviderRefused,
    SessionRejected,
    TransientError,
)
from tvmaniac_refreshd.core.locations import APP
from tvmaniac_refreshd.core.tokens import ResponseInvalid, describe, number
from tvmaniac_refreshd.providers.dialects import LOGIN_NEEDED, TEMPORARY, canonical_error


def _import_httpx_without_its_cli() -> None:
    """Import httpx without its command-line tool, which it loads whenever rich, click and
    pygments happen to be installed: 25 to 40 ms, a sixth of a `refresh --force`, for nothing
    of ours. The blocking entry is removed again, so only this import skips it."""
    if "httpx" in sys.modules or "httpx._main" in sys.modules:
        return
    sys.modules["httpx._main"] = None  # type: ignore[assignment]  # "not importable", by spec
    try:
        import httpx  # noqa: F401, PLC0415
    finally:
        if sys.modules.get("httpx._main", False) is None:
            del sys.modules["httpx._main"]


_import_httpx_without_its_cli()

import httpx  # noqa: E402 (after the function above)
import truststore  # noqa: E402

USER_AGENT = f"{APP}/{__version__}"
# A token response is a few hundred bytes; anything near this is not one.
MAX_BODY_BYTES = 64 * 1024
# Statuses that say "not now" rather than "no": 408, 429, 5xx and Cloudflare's 52x.
TRANSIENT_STATUSES = frozenset({408, 425, 429}) | frozenset(range(500, 600))
# Retry-After values beyond this are treated as this; a day is the longest sane wait.
MAX_RETRY_AFTER = 86400.0
# RFC 6749 §5.2: error = 1*( %x20-21 / %x23-5B / %x5D-7E ); real codes are under 40 characters.
_ERROR_CODE = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]{1,64}")


@dataclass(frozen=True)
class Response:
    """A fully read, size-capped HTTP response."""

    status: int
    headers: httpx.Headers
    body: bytes = field(repr=False)

    @property
    def is_html(self) -> bool:
        return "html" in self.headers.get("content-type", "").lower() or self.body.lstrip()[
            :15
        ].lower().startswith((b"<!doctype html", b"<html"))

    def json(self) -> object:
        """Return the decoded JSON body, or None if it is not JSON."""
        if not self.body.strip() or self.is_html:
            return None
        try:
            return json.loads(self.body)
        except ValueError:
            return None


def tls_context() -> ssl.SSLContext:
    """Verify servers against the OS's trust store, loaded at the first TLS handshake.

    truststore (pip's default too) asks the OS: macOS's Keychain and a corporate CA installed
    into the system store are trusted as a browser trusts them, which certifi's frozen bundle
    does not; on Linux it is OpenSSL's own store (``SSL_CERT_FILE``/``SSL_CERT_DIR`` honoured).
    And nothing is parsed until a handshake needs it: httpx's default context parses certifi's
    whole bundle when the client is made, tens of milliseconds that a command talking plain
    HTTP, or not talking at all, paid for nothing.
    """
    return truststore.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


def make_http_client(settings: HttpSettings) -> httpx.Client:
    """Return the httpx client every provider request goes through."""
    return httpx.Client(
        verify=tls_context(),
        headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
        timeout=httpx.Timeout(
            connect=settings.connect_timeout,
            read=settings.read_timeout,
            write=settings.read_timeout,
            pool=settings.connect_timeout,
        ),
        follow_redirects=False,
        trust_env=True,
    )


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Return the seconds a ``Retry-After`` header asks us to wait, or None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return min(max(0.0, when.timestamp() - now), MAX_RETRY_AFTER)


def _host(url: str) -> str:
    return urlsplit(url).netloc or url


@contextlib.contextmanager
def _transport_errors(url: str) -> Iterator[None]:
    """Translate httpx's transport exceptions into TransientError, naming only the host."""
    host = _host(url)
    try:
        yield
    except httpx.TimeoutException:
        raise TransientError(f"{host} did not answer in time") from None
    except httpx.ConnectError as exc:
        reason = "TLS handshake failed" if "SSL" in str(exc) else "could not connect"
        raise TransientError(f"{reason} to {host} (network down or DNS failure?)") from None
    except (httpx.TransportError, httpx.DecodingError) as exc:
        raise TransientError(f"the connection to {host} failed: {type(exc).__name__}") from None


def error_code(response: Response) -> str | None:
    """Return the OAuth error code from the JSON body or the WWW-Authenticate header, in the
    RFC's words (``dialects.canonical_error``).

    Only a code made of RFC 6749's characters (printable ASCII but ``"`` and ``\\``) and of a
    sane length counts: the server's text is printed and stored, and must carry no terminal
    escape, no second line, and no echo of a token.
    """
    body = response.json()
    code: str | None = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        code = str(body["error"])
    else:
        challenge = response.headers.get("www-authenticate", "")
        marker = 'error="'
        if marker in challenge:
            code = str(challenge.split(marker, 1)[1].split('"', 1)[0])
    if code is not None and not _ERROR_CODE.fullmatch(code):
        code = None
    return canonical_error(code, body)


def _is_cloudflare(response: Response) -> bool:
    """Return whether the edge answered, not Trakt's app (which always adds X-Request-Id)."""
    from_edge = response.headers.get("server", "").lower() == "cloudflare" or (
        "cf-ray" in response.headers
    )
    return from_edge and "x-request-id" not in response.headers


def raise_for_failure(response: Response, *, what: str, now: float) -> None:
    """Raise the project error that a non-2xx (or non-JSON) ``response`` means.

    Raises:
        TransientError: 408/429/5xx/52x, Cloudflare pages, HTML instead of JSON,
            ``temporarily_unavailable``.
        SessionRejected: ``invalid_grant``, ``invalid_token``, ``interaction_required``: the
            session is gone, a login is needed.
        ProviderIncompatible: a 2xx whose body is not JSON (nor an HTML page).
        ClientRejected: ``invalid_client`` or an unknown API key: fix client_id/client_secret.
        AccountLocked: 423, the user's account is locked at the provider.
        ProviderRefused: anything else, with the status, keeping the tokens.
    """
    status = response.status
    if status in TRANSIENT_STATUSES:
        retry_after = parse_retry_after(response.headers.get("retry-after"), now=now)
        hint = f"; it asks us to wait {retry_after:.0f}s" if retry_after is not None else ""
        kind = "rate limited" if status == 429 else f"a temporary error (HTTP {status})"
        raise TransientError(
            f"{what}: the provider answered with {kind}{hint}", retry_after=retry_after
        )
    code = error_code(response)
    if code in LOGIN_NEEDED:
        raise SessionRejected(
            f"{what}: the provider rejected the session ({code}); run `tvmaniac-refreshd login`"
        )
    if code in TEMPORARY:
        raise TransientError(f"{what}: the provider is temporarily unavailable ({code})")
    if code in ("invalid_client", "unauthorized_client"):
        raise ClientRejected(
            f"{what}: the provider rejected the client credentials ({code}); check client_id "
            "and client_secret in the config"
        )
    if status == 403 and _is_cloudflare(response):
        raise TransientError(f"{what}: blocked by the provider's Cloudflare edge (HTTP 403)")
    if status == 403:
        raise ClientRejected(f"{what}: the provider does not accept this client_id (HTTP 403)")
    if status == 423:
        raise AccountLocked(
            f"{what}: the provider reports the user account as locked or deactivated "
            "(HTTP 423); contact its support, the stored tokens were kept"
        )
    if 200 <= status < 300 and response.is_html:
        # A captive portal or a proxy's page: it passes once the network is the real one.
        raise TransientError(f"{what}: the provider answered with an HTML page (HTTP {status})")
    if 200 <= status < 300 and code is None:
        # A server that answers, and answers something else: waiting does not change it.
        kind = "an empty body" if not response.body.strip() else "a body that is not JSON"
        raise ProviderIncompatible(
            f"{what}: the provider answered with {kind} (HTTP {status}), where OAuth2 "
            "prescribes a JSON object; the stored tokens were kept"
        )
    detail = f" ({code})" if code else ""
    raise ProviderRefused(
        f"{what}: the provider refused the request with HTTP {status}{detail}; "
        "the stored tokens were kept"
    )


def overall_deadline(http: httpx.Client) -> float:
    """Return the cap on one whole exchange: a trickling server satisfies every read timeout."""
    timeout = http.timeout
    parts = [timeout.connect, timeout.read, timeout.write]
    return sum(part for part in parts if part is not None) or 60.0


def post(
    http: httpx.Client,
    url: str,
    *,
    what: str,
    json_body: Mapping[str, str] | None = None,
    form: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """POST to ``url`` and read the answer with a size cap and an overall deadline.

    The body is asked for and read uncompressed: the cap counts the bytes that arrive, and a
    small gzip body must not inflate to hundreds of megabytes before it is checked.

    Raises:
        TransientError: for every transport failure, an oversized, compressed or too slow
            answer.
    """
    body = json.dumps(json_body).encode() if json_body is not None else None
    request_headers = dict(headers or {})
    if body is not None:
        request_headers["Content-Type"] = "application/json"
    return _exchange(http, "POST", url, what=what, body=body, form=form, headers=request_headers)


def get(http: httpx.Client, url: str, *, what: str, headers: Mapping[str, str]) -> Response:
    """GET ``url`` with the same size cap, deadline and error translation as ``post``.

    Raises:
        TransientError: for every transport failure, an oversized, compressed or too slow
            answer.
    """
    return _exchange(http, "GET", url, what=what, headers=dict(headers))


def _exchange(
    http: httpx.Client,
    method: str,
    url: str,
    *,
    what: str,
    headers: dict[str, str],
    body: bytes | None = None,
    form: Mapping[str, str] | None = None,
) -> Response:
    deadline = overall_deadline(http)
    started = time.monotonic()
    headers["Accept-Encoding"] = "identity"
    with (
        _transport_errors(url),
        http.stream(
            method, url, content=body, data=dict(form) if form else None, headers=headers
        ) as stream,
    ):
        encoding = stream.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise TransientError(
                f"{what}: the provider sent a {encoding}-compressed answer although an "
                "uncompressed one was asked for; not read"
            )
        chunks: list[bytes] = []
        size = 0
        # An identity body: httpx's decoding passes the bytes through as they arrive.
        for chunk in stream.iter_bytes():
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise TransientError(
                    f"{what}: the response was larger than {MAX_BODY_BYTES} bytes; not read"
                )
            if time.monotonic() - started > deadline:
                raise TransientError(f"{what}: the response was too slow to arrive")
            chunks.append(chunk)
        return Response(stream.status_code, stream.headers, b"".join(chunks))


def _fields(body: dict[str, Any]) -> str:
    """Name the fields an answer has, for an error about one it lacks (names, never values)."""
    names = [key for key in body if isinstance(key, str) and _ERROR_CODE.fullmatch(key)]
    return ", ".join(sorted(names)[:12]) or "none"


def required_str(body: dict[str, Any], key: str, value: object = None) -> str:
    """Return the string ``key`` (or ``value``, read under another spelling) of ``body``."""
    value = body.get(key) if value is None else value
    if value is None:
        raise ResponseInvalid(f"{key} is missing (the answer has: {_fields(body)})")
    if not isinstance(value, str) or not value or len(value) > 2048:
        raise ResponseInvalid(f"{key} is {describe(value)}, not a string")
    return value


def required_int(
    body: dict[str, Any], key: str, *, minimum: int, default: int | None = None
) -> int:
    """Return the number ``key`` of ``body``: a JSON number or a string of digits."""
    if key not in body and default is not None:
        return default
    value = number(body.get(key))
    if value is None or value < minimum:
        what = "missing" if key not in body else describe(body.get(key))
        raise ResponseInvalid(f"{key} is {what}, not a whole number of seconds >= {minimum}")
    return min(value, 86400)
