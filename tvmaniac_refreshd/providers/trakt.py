"""Trakt's OAuth dialect: JSON bodies, the trakt-api-key header, and its own device-login codes.

Requests go through ``http.post``; failures are classified by ``http.raise_for_failure``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tvmaniac_refreshd.config.settings import Account, TraktSettings, settings_of
from tvmaniac_refreshd.core.errors import LoginFailed, ProviderIncompatible
from tvmaniac_refreshd.core.locations import APP
from tvmaniac_refreshd.core.tokens import ResponseInvalid, TokenSet
from tvmaniac_refreshd.providers.answers import Spent, read_tokens
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
    get,
    post,
    raise_for_failure,
    required_int,
    required_str,
)

if TYPE_CHECKING:
    import httpx

WORDING = Wording(
    name="Trakt",
    manage_apps="your Trakt settings (Connected apps)",
    relogin=f"run `{APP} login` and enter the code it shows at Trakt",
)


class TraktClient:
    """Trakt's OAuth endpoints for one account, over an injected httpx client."""

    def __init__(self, http: httpx.Client, account: Account, client_secret: str | None) -> None:
        self._http = http
        self._account = account
        self._settings = settings_of(account, TraktSettings)
        self._secret = client_secret

    @property
    def wording(self) -> Wording:
        return WORDING

    @property
    def has_device_login(self) -> bool:
        return True

    def browser(self) -> BrowserLogin | None:
        """Trakt's PKCE login (`login --browser`); the device login stays the default."""
        from tvmaniac_refreshd.providers.trakt_browser import TraktBrowserLogin  # noqa: PLC0415

        return TraktBrowserLogin(self._http, self._account)

    def _post(self, path: str, payload: dict[str, str], *, what: str) -> Response:
        headers = {"trakt-api-key": self._account.client_id, "trakt-api-version": "2"}
        return post(
            self._http,
            f"{self._settings.auth_url}{path}",
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
            raise ProviderIncompatible(
                f"{what}: Trakt's answer is not the one its API documents: {exc}"
            ) from None

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
            return self._tokens(response, what=what, now=now, spent=Spent.LOGIN_CODE)
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
                "redirect_uri": self._settings.redirect_uri,
                "grant_type": "refresh_token",
            }
        )
        response = self._post("/oauth/token", payload, what=what)
        if response.status != 200:
            raise_for_failure(response, what=what, now=now)
        return self._tokens(response, what=what, now=now, spent=Spent.REFRESH_TOKEN)

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

    def identity(self, tokens: TokenSet, *, now: float) -> str | None:
        """Return the Trakt user name the tokens belong to (``GET /users/settings``).

        Raises:
            SessionRejected, ClientRejected, TransientError, RefreshdError.
        """
        what = "asking Trakt who logged in"
        headers = {
            "trakt-api-key": self._account.client_id,
            "trakt-api-version": "2",
            "Authorization": f"Bearer {tokens.access_token}",
        }
        response = get(
            self._http, f"{self._settings.api_url}/users/settings", what=what, headers=headers
        )
        body = response.json()
        if response.status != 200 or not isinstance(body, dict):
            raise_for_failure(response, what=what, now=now)
            return None
        user = body.get("user")
        name = user.get("username") if isinstance(user, dict) else None
        return user_name(name)

    def _tokens(self, response: Response, *, what: str, now: float, spent: Spent) -> TokenSet:
        """Read a 200 from Trakt's token endpoint: it spent a code or a refresh token."""
        return read_tokens(
            response,
            what=what,
            now=now,
            spent=spent,
            endpoint_key="auth_url",
            generic=False,
            account=self._account.name,
        )
