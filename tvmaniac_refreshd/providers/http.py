"""Trakt's OAuth dialect over HTTP: the only module that uses httpx.

Every httpx exception and every response status is translated here, once, into the project's
errors (see errors.py). Bodies are read with a size cap and an overall deadline, so neither a
huge nor a trickling response can hold a command or the daemon.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import ssl
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any
from urllib.parse import urlsplit

import httpx
import truststore

from tvmaniac_refreshd import __version__
from tvmaniac_refreshd.config.settings import Account, HttpSettings
from tvmaniac_refreshd.core.errors import (
    ClientRejected,
    LoginFailed,
    RefreshdError,
    SessionRejected,
    TransientError,
)
from tvmaniac_refreshd.core.tokens import ResponseInvalid, TokenSet, parse_token_response

USER_AGENT = f"tvmaniac-refreshd/{__version__}"
# A token response is a few hundred bytes; anything near this is not one.
MAX_BODY_BYTES = 64 * 1024
# Statuses that say "not now" rather than "no": 408, 429, 5xx and Cloudflare's 52x.
TRANSIENT_STATUSES = frozenset({408, 425, 429}) | frozenset(range(500, 600))
# Retry-After values beyond this are treated as this; a day is the longest sane wait.
MAX_RETRY_AFTER = 86400.0


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


@dataclass(frozen=True)
class DeviceCode:
    """The answer to a device-code request: what the user must type, and where."""

    device_code: str = field(repr=False)
    user_code: str
    verification_url: str
    expires_in: int
    interval: int
    # RFC 8628's URL with the code already in it, for the QR code; Trakt sends none.
    verification_url_complete: str | None = None


class PollState(Enum):
    """A device-token poll that has no tokens yet."""

    PENDING = "pending"  # the user has not approved yet
    SLOW_DOWN = "slow_down"  # we polled too fast: widen the interval


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
    """Return the OAuth error code from the JSON body or the WWW-Authenticate header."""
    body = response.json()
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return str(body["error"])
    challenge = response.headers.get("www-authenticate", "")
    marker = 'error="'
    if marker in challenge:
        return str(challenge.split(marker, 1)[1].split('"', 1)[0])
    return None


def _is_cloudflare(response: Response) -> bool:
    """Return whether the edge answered, not Trakt's app (which always adds X-Request-Id)."""
    from_edge = response.headers.get("server", "").lower() == "cloudflare" or (
        "cf-ray" in response.headers
    )
    return from_edge and "x-request-id" not in response.headers


def raise_for_failure(response: Response, *, what: str, now: float) -> None:
    """Raise the project error that a non-2xx (or non-JSON) ``response`` means.

    Raises:
        TransientError: 408/429/5xx/52x, Cloudflare pages, HTML instead of JSON.
        SessionRejected: ``invalid_grant`` or ``invalid_token``: the session is gone.
        ClientRejected: ``invalid_client`` or an unknown API key: fix client_id/client_secret.
        RefreshdError: anything else, with the status, keeping the tokens.
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
    if code in ("invalid_grant", "invalid_token"):
        raise SessionRejected(
            f"{what}: the provider rejected the session ({code}); run `tvmaniac-refreshd login`"
        )
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
        raise RefreshdError(
            f"{what}: the provider reports the user account as locked or deactivated "
            "(HTTP 423); contact its support, the stored tokens were kept"
        )
    if 200 <= status < 300:
        kind = "an HTML page" if response.is_html else "a body that is not the expected JSON"
        raise TransientError(f"{what}: the provider answered with {kind} (HTTP {status})")
    detail = f" ({code})" if code else ""
    raise RefreshdError(
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

    Raises:
        TransientError: for every transport failure, an oversized or a too slow answer.
    """
    deadline = overall_deadline(http)
    started = time.monotonic()
    body = json.dumps(json_body).encode() if json_body is not None else None
    request_headers = dict(headers or {})
    if body is not None:
        request_headers["Content-Type"] = "application/json"
    with (
        _transport_errors(url),
        http.stream(
            "POST", url, content=body, data=dict(form) if form else None, headers=request_headers
        ) as stream,
    ):
        chunks: list[bytes] = []
        size = 0
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


class TraktClient:
    """Trakt's OAuth endpoints for one account, over an injected httpx client."""

    def __init__(self, http: httpx.Client, account: Account, client_secret: str | None) -> None:
        self._http = http
        self._account = account
        self._secret = client_secret

    def _post(self, path: str, payload: dict[str, str], *, what: str) -> Response:
        headers = {"trakt-api-key": self._account.client_id, "trakt-api-version": "2"}
        return post(
            self._http,
            f"{self._account.auth_url}{path}",
            what=what,
            json_body=payload,
            headers=headers,
        )

    def _with_secret(self, payload: dict[str, str]) -> dict[str, str]:
        # Trakt deprecated client_secret for public clients; send it only when we have one.
        if self._secret:
            payload["client_secret"] = self._secret
        return payload

    def request_device_code(self, *, now: float) -> DeviceCode:
        """Start a device login.

        Raises:
            ClientRejected, TransientError, RefreshdError: see ``raise_for_failure``.
        """
        what = "requesting a device code"
        response = self._post(
            "/oauth/device/code", {"client_id": self._account.client_id}, what=what
        )
        body = response.json()
        if response.status != 200 or not isinstance(body, dict):
            raise_for_failure(response, what=what, now=now)
        assert isinstance(body, dict)  # noqa: S101  # raise_for_failure raised otherwise
        try:
            return DeviceCode(
                device_code=required_str(body, "device_code"),
                user_code=required_str(body, "user_code"),
                verification_url=required_str(body, "verification_url"),
                expires_in=required_int(body, "expires_in", minimum=1),
                interval=required_int(body, "interval", minimum=1, default=5),
            )
        except ResponseInvalid as exc:
            raise TransientError(f"{what}: the provider's answer was malformed: {exc}") from None

    def poll_device_token(self, device: DeviceCode, *, now: float) -> TokenSet | PollState:
        """Ask once whether the user approved ``device``.

        Raises:
            LoginFailed: the code is unknown, used, expired or denied (404, 409, 410, 418).
            ClientRejected, TransientError, RefreshdError: see ``raise_for_failure``.
        """
        what = "waiting for approval"
        payload = self._with_secret(
            {"code": device.device_code, "client_id": self._account.client_id}
        )
        response = self._post("/oauth/device/token", payload, what=what)
        terminal = {
            404: "the provider does not know this code; start `login` again",
            409: "this code was already used; start `login` again",
            410: "the code expired before it was approved; start `login` again",
            418: "the login was denied at the provider",
        }
        if response.status == 200:
            return self._tokens(response, what=what, now=now)
        if response.status == 400 and error_code(response) is None:
            return PollState.PENDING
        if response.status == 429:
            return PollState.SLOW_DOWN
        if response.status in terminal:
            raise LoginFailed(terminal[response.status])
        raise_for_failure(response, what=what, now=now)
        raise AssertionError("unreachable")  # pragma: no cover

    def refresh(self, refresh_token: str, *, now: float) -> TokenSet:
        """Spend ``refresh_token`` for a new token pair.

        Raises:
            SessionRejected, ClientRejected, TransientError, RefreshdError.
        """
        what = "refreshing the token"
        payload = self._with_secret(
            {
                "refresh_token": refresh_token,
                "client_id": self._account.client_id,
                "redirect_uri": self._account.redirect_uri,
                "grant_type": "refresh_token",
            }
        )
        response = self._post("/oauth/token", payload, what=what)
        if response.status != 200:
            raise_for_failure(response, what=what, now=now)
        return self._tokens(response, what=what, now=now)

    def revoke(self, tokens: TokenSet, *, now: float) -> None:
        """Revoke the access token (and with it, at Trakt, the grant).

        Raises:
            ClientRejected, TransientError, RefreshdError.
        """
        what = "revoking the token"
        payload = self._with_secret(
            {"token": tokens.access_token, "client_id": self._account.client_id}
        )
        response = self._post("/oauth/revoke", payload, what=what)
        if not 200 <= response.status < 300:
            raise_for_failure(response, what=what, now=now)

    def _tokens(self, response: Response, *, what: str, now: float) -> TokenSet:
        body = response.json()
        if body is None:
            raise_for_failure(response, what=what, now=now)
        try:
            return parse_token_response(body, now=now)
        except ResponseInvalid as exc:
            raise TransientError(
                f"{what}: the provider's token response was malformed ({exc}); "
                "the stored tokens were kept"
            ) from None


def required_str(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value or len(value) > 2048:
        raise ResponseInvalid(f"{key} is missing or not a string")
    return value


def required_int(
    body: dict[str, Any], key: str, *, minimum: int, default: int | None = None
) -> int:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ResponseInvalid(f"{key} is missing or not a positive integer")
    return min(value, 86400)
