"""Standard OAuth2 for any provider: RFC 6749 refresh, RFC 8628 device flow, RFC 7009 revocation,
and the authorization-code exchange of RFC 7636 (PKCE).

Requests go through ``http.post`` (the one place that speaks HTTP); responses are classified by
the same ``raise_for_failure`` as Trakt's, so an ``invalid_grant`` means the same everywhere.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from typing import TYPE_CHECKING
from urllib.parse import quote, urlencode, urlsplit

from tvmaniac_refreshd.config.settings import Account, OAuth2Settings, settings_of
from tvmaniac_refreshd.core.errors import (
    ClientRejected,
    LoginFailed,
    NotConfigured,
    TransientError,
)
from tvmaniac_refreshd.core.locations import APP
from tvmaniac_refreshd.core.logs import get_logger
from tvmaniac_refreshd.core.tokens import ResponseInvalid, TokenSet, parse_token_response
from tvmaniac_refreshd.providers.base import (
    BrowserLogin,
    DeviceCode,
    PollState,
    Wording,
    user_name,
)
from tvmaniac_refreshd.providers.http import (
    Response,
    error_code,
    post,
    raise_for_failure,
    required_int,
    required_str,
)

if TYPE_CHECKING:
    import httpx

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
# RFC 8628 §3.2: "If no value is provided, clients MUST use 5 as the default."
DEFAULT_INTERVAL = 5


def wording(account: Account) -> Wording:
    """Name a generic server by its host: the config has no other name for it."""
    settings = settings_of(account, OAuth2Settings)
    url = settings.authorization_url or settings.token_url or settings.device_authorization_url
    host = urlsplit(url).hostname if url else None
    name = host or "the OAuth2 provider"
    return Wording(
        name=name,
        manage_apps=f"your account settings at {name}",
        relogin=f"run `{APP} login` and sign in at {name} again",
    )


def pkce_pair() -> tuple[str, str]:
    """Return a (verifier, S256 challenge) pair for RFC 7636."""
    import hashlib  # noqa: PLC0415

    verifier = secrets.token_urlsafe(64)[:96]
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def authorization_query(
    client_id: str, redirect_uri: str, state: str, challenge: str
) -> dict[str, str]:
    """Return the authorization request's parameters (RFC 6749 §4.1.1 with RFC 7636 §4.3)."""
    return {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "state": state,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }


def id_token_user(id_token: object) -> str | None:
    """Return who an OpenID Connect ID token names: ``preferred_username``, else ``sub``.

    The signature is not checked: the token came straight from the token endpoint over TLS,
    which OpenID Connect Core §3.1.3.7 (6) accepts in place of it, and the name is only shown
    to the user, never trusted for a decision.
    """
    if not isinstance(id_token, str) or id_token.count(".") != 2:
        return None
    payload = id_token.split(".")[1]
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (binascii.Error, ValueError):
        return None
    if not isinstance(claims, dict):
        return None
    return user_name(claims.get("preferred_username")) or user_name(claims.get("sub"))


class OAuth2Client:
    """One account's standard OAuth2 endpoints, with its client authentication."""

    def __init__(self, http: httpx.Client, account: Account, client_secret: str | None) -> None:
        settings = settings_of(account, OAuth2Settings)
        if not settings.token_url:
            raise NotConfigured(f"account {account.name!r} has no token_url")
        self._http = http
        self._account = account
        self._settings = settings
        self._secret = client_secret
        self._token_url = settings.token_url
        self._log = get_logger(account=account.name)
        # Who the last token response's ID token named (OpenID Connect), for `identity`.
        self._id_token_user: str | None = None

    @property
    def wording(self) -> Wording:
        return wording(self._account)

    @property
    def has_device_login(self) -> bool:
        return self._settings.device_authorization_url is not None

    def browser(self) -> BrowserLogin | None:
        # Always offered: without an authorization_url, authorization_request says so.
        return self

    @property
    def registered_redirect_uri(self) -> str | None:
        # RFC 8252 servers accept any port of a registered loopback URI: redirect_port decides.
        return None

    def _send(
        self, url: str, form: dict[str, str], *, what: str, client_id_in_body: bool = False
    ) -> Response:
        """POST ``form`` to ``url`` (exactly as configured) with the client's authentication.

        ``client_id_in_body``: send ``client_id`` in the body even with HTTP Basic, where the
        RFC's example does (RFC 8628 §3.1, §3.4) or common servers rely on it (RFC 6749 §6).
        """
        method = self._settings.client_auth
        if method != "none" and not self._secret:
            raise ClientRejected(
                f"account {self._account.name!r} uses {method} but has no client secret; store "
                'it with `tvmaniac-refreshd config set-secret`, or set client_auth = "none"'
            )
        headers: dict[str, str] = {}
        if method == "client_secret_basic" and self._secret:
            # RFC 6749 §2.3.1: both parts are form-encoded before the Basic encoding.
            pair = f"{quote(self._account.client_id, safe='')}:{quote(self._secret, safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        if client_id_in_body or method != "client_secret_basic":
            # RFC 6749 §2.3.1 and §3.2.1: a client that does not authenticate with Basic names
            # itself with client_id in the body; one that does MAY (the same id, never another).
            form["client_id"] = self._account.client_id
        if method == "client_secret_post" and self._secret:
            form["client_secret"] = self._secret
        return post(self._http, url, what=what, form=form, headers=headers)

    def _tokens(
        self, response: Response, *, what: str, now: float, previous: str | None = None
    ) -> TokenSet:
        body = response.json()
        if body is None:
            raise_for_failure(response, what=what, now=now)
        if isinstance(body, dict):
            self._id_token_user = id_token_user(body.get("id_token"))
        if isinstance(body, dict) and "expires_in" not in body:
            self._log.warning(
                "token.no_expiry",
                assumed_lifetime_s=self._settings.default_lifetime,
                hint="set default_lifetime for this account",
            )
        try:
            return parse_token_response(
                body,
                now=now,
                generic=True,
                previous_refresh=previous,
                default_lifetime=self._settings.default_lifetime,
            )
        except ResponseInvalid as exc:
            hint = ""
            if isinstance(body, dict) and "refresh_token" not in body and previous is None:
                hint = "; the server issued no refresh token (add the offline_access scope?)"
            raise TransientError(
                f"{what}: the provider's token response was malformed ({exc}){hint}; "
                "the stored tokens were kept"
            ) from None

    def request_device_code(self, *, now: float) -> DeviceCode:
        """Start an RFC 8628 device login."""
        url = self._settings.device_authorization_url
        if url is None:
            raise LoginFailed(
                f"account {self._account.name!r} has no device_authorization_url; "
                "use `login --browser`"
            )
        what = "requesting a device code"
        # RFC 8628 §3.1: client_id and scope, as its example shows. client_id goes in the body
        # even with HTTP Basic: the section allows leaving it out then, but oauthlib-based
        # servers (Django OAuth Toolkit among them) answer 400 "Missing client_id parameter".
        form = {"scope": " ".join(self._settings.scopes)} if self._settings.scopes else {}
        response = self._send(url, form, what=what, client_id_in_body=True)
        body = response.json()
        if response.status != 200 or not isinstance(body, dict):
            raise_for_failure(response, what=what, now=now)
        assert isinstance(body, dict)  # noqa: S101  # raise_for_failure raised otherwise
        try:
            complete = body.get("verification_uri_complete")
            return DeviceCode(
                device_code=required_str(body, "device_code"),
                user_code=required_str(body, "user_code"),
                verification_url=required_str(body, "verification_uri"),
                expires_in=required_int(body, "expires_in", minimum=1),
                interval=required_int(body, "interval", minimum=1, default=DEFAULT_INTERVAL),
                verification_url_complete=complete if isinstance(complete, str) else None,
            )
        except ResponseInvalid as exc:
            raise TransientError(f"{what}: the provider's answer was malformed: {exc}") from None

    def poll_device_token(self, device: DeviceCode, *, now: float) -> TokenSet | PollState:
        """Ask once whether the user approved ``device`` (RFC 8628 §3.4, §3.5)."""
        what = "waiting for approval"
        # RFC 8628 §3.4: grant_type, device_code and client_id, as its example shows; client_id
        # also with HTTP Basic, like the device authorization request that issued the code.
        form = {"grant_type": DEVICE_GRANT, "device_code": device.device_code}
        response = self._send(self._token_url, form, what=what, client_id_in_body=True)
        if response.status == 200:
            return self._tokens(response, what=what, now=now)
        code = error_code(response)
        if code == "authorization_pending":
            return PollState.PENDING
        if code == "slow_down":
            return PollState.SLOW_DOWN
        if code == "access_denied":
            raise LoginFailed("the login was denied at the provider")
        if code == "expired_token":
            raise LoginFailed("the code expired before it was approved; run `login` again")
        if code == "invalid_grant":
            raise LoginFailed("the provider no longer accepts this code; run `login` again")
        raise_for_failure(response, what=what, now=now)
        raise AssertionError("unreachable")  # pragma: no cover

    def authorization_request(self, redirect_uri: str, state: str, challenge: str) -> str:
        """Return the URL the browser opens for an authorization-code login with PKCE."""
        if self._settings.authorization_url is None:
            raise LoginFailed(
                f"account {self._account.name!r} has no authorization_url; use the device login"
            )
        query = authorization_query(self._account.client_id, redirect_uri, state, challenge)
        if self._settings.scopes:
            query["scope"] = " ".join(self._settings.scopes)
        if "offline_access" in self._settings.scopes:
            # OpenID Connect Core §11: offline_access is ignored unless consent is prompted.
            query["prompt"] = "consent"
        separator = "&" if "?" in self._settings.authorization_url else "?"
        return f"{self._settings.authorization_url}{separator}{urlencode(query)}"

    def exchange_code(self, code: str, *, verifier: str, redirect_uri: str, now: float) -> TokenSet:
        """Trade an authorization code for tokens (RFC 6749 §4.1.3 with RFC 7636)."""
        what = "exchanging the authorization code"
        # RFC 6749 §4.1.3: grant_type, code, and redirect_uri because the authorization request
        # carried one (the server compares them); client_id only without HTTP Basic (§4.1.3:
        # "REQUIRED, if the client is not authenticating"): oxide-auth takes a client_id in
        # this body as the client's whole authentication, ignoring the Basic header
        # (197g/oxide-auth#91). RFC 7636 §4.5: code_verifier.
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
        }
        response = self._send(self._token_url, form, what=what)
        if response.status != 200:
            raise_for_failure(response, what=what, now=now)
        return self._tokens(response, what=what, now=now)

    def refresh(self, refresh_token: str, *, now: float) -> TokenSet:
        """Spend ``refresh_token`` (RFC 6749 §6); keep it if the server sends no new one."""
        what = "refreshing the token"
        # RFC 6749 §6: grant_type and refresh_token, as its example shows, and client_id also
        # with HTTP Basic (§3.2.1: a client MAY name itself so): Apereo CAS answered "Missing
        # request parameter: [client_id]" without it until 2020 (apereo/cas#4746). No scope:
        # omitted, it means "as originally granted", whereas sending the configured scopes
        # fails with invalid_scope where the server granted less.
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        response = self._send(self._token_url, form, what=what, client_id_in_body=True)
        if response.status != 200:
            raise_for_failure(response, what=what, now=now)
        return self._tokens(response, what=what, now=now, previous=refresh_token)

    def identity(self, tokens: TokenSet, *, now: float) -> str | None:
        """Return the user the ID token of the last token response named, or None (a server
        that is not OpenID Connect, or no ``openid`` scope)."""
        return self._id_token_user

    def revoke(self, tokens: TokenSet, *, now: float) -> None:
        """Revoke the refresh token (RFC 7009), which at most servers ends the whole grant."""
        url = self._settings.revocation_url
        if url is None:
            raise NotConfigured(
                "the provider has no revocation_url configured, so the grant stays valid there"
            )
        what = "revoking the token"
        # RFC 7009 §2.1: token and token_type_hint, as its example shows (client_id only without
        # HTTP Basic, §2.1 via RFC 6749 §2.3). The hint is optional (§2.1); it spares the
        # server a search of its access tokens first.
        form = {"token": tokens.refresh_token, "token_type_hint": "refresh_token"}
        response = self._send(url, form, what=what)
        if not 200 <= response.status < 300:
            raise_for_failure(response, what=what, now=now)
