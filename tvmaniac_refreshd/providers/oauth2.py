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

from tvmaniac_refreshd.config.presets import GMAIL_SCOPE, PRESETS, preset_of
from tvmaniac_refreshd.config.settings import Account, OAuth2Settings, settings_of
from tvmaniac_refreshd.core.errors import (
    ClientRejected,
    LoginFailed,
    NotConfigured,
    ProviderIncompatible,
    ProviderRefused,
    WrongEndpoint,
)
from tvmaniac_refreshd.core.locations import APP
from tvmaniac_refreshd.core.logs import get_logger
from tvmaniac_refreshd.core.tokens import ResponseInvalid, TokenSet
from tvmaniac_refreshd.providers.answers import Spent, read_tokens
from tvmaniac_refreshd.providers.base import (
    BrowserLogin,
    DeviceCode,
    PollState,
    Wording,
    user_name,
)
from tvmaniac_refreshd.providers.dialects import device_field
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
    """Name a preset's provider by its name, and any other server by its host."""
    settings = settings_of(account, OAuth2Settings)
    preset = preset_of(settings)
    if preset is not None:
        return Wording(
            name=preset.name,
            manage_apps=preset.manage_apps,
            relogin=f"run `{APP} login` and sign in at {preset.name} again",
        )
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


def _succeeded(response: Response) -> bool:
    """Return whether the endpoint answered with success: a 200 that names no error.

    GitHub answers its device and token endpoints' errors with HTTP 200 and an ``error`` field
    (docs.github.com, "Authorizing OAuth apps", "Error codes for the device flow"): that is an
    error answer, not a malformed token response.
    """
    return response.status == 200 and error_code(response) is None


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
        """Read a 200 from the token endpoint: it spent a code or a refresh token."""
        body = response.json()
        if isinstance(body, dict):
            self._id_token_user = id_token_user(body.get("id_token"))
        if isinstance(body, dict) and "expires_in" not in body:
            self._log.warning(
                "token.no_expiry",
                assumed_lifetime_s=self._settings.default_lifetime,
                hint="set default_lifetime for this account",
            )
        hint = ""
        if isinstance(body, dict) and "refresh_token" not in body and previous is None:
            hint = f"; the server issued no refresh token ({self._offline_hint()})"
        return read_tokens(
            response,
            what=what,
            now=now,
            spent=Spent.LOGIN_CODE if previous is None else Spent.REFRESH_TOKEN,
            endpoint_key="token_url",
            previous_refresh=previous,
            default_lifetime=self._settings.default_lifetime,
            hint=hint,
            account=self._account.name,
        )

    def _offline_hint(self) -> str:
        """Say how this provider is asked for a refresh token."""
        if preset_of(self._settings) is PRESETS["google"]:
            # Google: "OAuth 2.0 for Mobile & Desktop Apps", access_type; it has no
            # offline_access scope and refuses one as invalid_scope.
            return (
                'Google issues one only for access_type = "offline" with prompt = "consent": '
                'set preset = "google", or authorization_params'
            )
        return "most servers issue one only for the offline_access scope, or their own"

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
        if not _succeeded(response) or not isinstance(body, dict):
            # _succeeded: a 200 naming an error is an error answer here too (GitHub).
            self._device_refused(response, what=what, now=now)
        assert isinstance(body, dict)  # noqa: S101  # _device_refused raised otherwise
        if not {"device_code", "user_code"} & set(body):
            raise WrongEndpoint(
                f"{what}: the answer (HTTP 200) is no device authorization response; does "
                "device_authorization_url in the config point at the provider's device endpoint?"
            )
        try:
            # RFC 8628 §3.2 names verification_uri; Google sends verification_url (dialects.py).
            complete = device_field(body, "verification_uri_complete")
            return DeviceCode(
                device_code=required_str(body, "device_code"),
                user_code=required_str(body, "user_code"),
                verification_url=required_str(
                    body, "verification_uri", device_field(body, "verification_uri")
                ),
                expires_in=required_int(body, "expires_in", minimum=1),
                interval=required_int(body, "interval", minimum=1, default=DEFAULT_INTERVAL),
                verification_url_complete=complete if isinstance(complete, str) else None,
            )
        except ResponseInvalid as exc:
            raise ProviderIncompatible(
                f"{what}: the provider's answer does not fit RFC 8628: {exc}"
            ) from None

    def _device_refused(self, response: Response, *, what: str, now: float) -> None:
        """Raise for a failed device authorization request, with a way forward."""
        if error_code(response) == "invalid_scope" and self._settings.authorization_url:
            # Google refuses most scopes in the device flow, Gmail's among them ("OAuth 2.0
            # for TV and Limited-Input Device Applications", "Allowed scopes").
            scopes = " ".join(self._settings.scopes) or "(none)"
            extra = (
                f" Google allows {GMAIL_SCOPE} only in the browser flow."
                if GMAIL_SCOPE in self._settings.scopes
                else ""
            )
            raise ProviderRefused(
                f"{what}: the provider refuses the scopes {scopes} in the device flow "
                f"(invalid_scope).{extra} Log in with `{APP} login --browser`, or remove "
                "device_authorization_url from the account so that `login` does"
            )
        raise_for_failure(response, what=what, now=now)

    def poll_device_token(self, device: DeviceCode, *, now: float) -> TokenSet | PollState:
        """Ask once whether the user approved ``device`` (RFC 8628 §3.4, §3.5)."""
        what = "waiting for approval"
        # RFC 8628 §3.4: grant_type, device_code and client_id, as its example shows; client_id
        # also with HTTP Basic, like the device authorization request that issued the code.
        form = {"grant_type": DEVICE_GRANT, "device_code": device.device_code}
        response = self._send(self._token_url, form, what=what, client_id_in_body=True)
        if _succeeded(response):
            return self._tokens(response, what=what, now=now)
        # By the error word, whatever the status: RFC 8628 §3.5 says 400, Google answers 428
        # authorization_pending and 403 slow_down/access_denied ("OAuth 2.0 for TV and
        # Limited-Input Device Applications", "Poll Google's authorization server"), and
        # Microsoft's words are translated by error_code (dialects.py).
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
        # The provider's own parameters (Google's access_type=offline): config/presets.py.
        query.update(self._settings.authorization_params)
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
        if not _succeeded(response):
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
        if not _succeeded(response):
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
