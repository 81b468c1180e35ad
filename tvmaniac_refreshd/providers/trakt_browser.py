"""Trakt's browser login: the authorization code with PKCE (S256) and a loopback redirect.

Trakt's 2026 guidance prefers PKCE for desktop apps and says future apps may get no client
secret, so none is sent with the code: the verifier proves that we asked for it. Trakt accepts
only a redirect URI registered for the app, "case-sensitive and must exactly match", so the
port cannot be picked at random: the account's ``redirect_uri`` names it, e.g.
``http://127.0.0.1:8765/callback``, and the same URI is registered in the Trakt app.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlencode, urlsplit

from tvmaniac_refreshd.config.settings import Account, TraktSettings, settings_of
from tvmaniac_refreshd.config.values import LOOPBACK_HOSTS
from tvmaniac_refreshd.core.errors import LoginFailed, UsageError
from tvmaniac_refreshd.core.locations import TRAKT_APPS
from tvmaniac_refreshd.core.tokens import TokenSet
from tvmaniac_refreshd.providers.answers import Spent, read_tokens
from tvmaniac_refreshd.providers.http import error_code, post, raise_for_failure
from tvmaniac_refreshd.providers.oauth2 import authorization_query

if TYPE_CHECKING:
    import httpx

EXAMPLE_REDIRECT = "http://127.0.0.1:8765/callback"


def loopback_redirect(account: Account) -> tuple[int, str]:
    """Return the port to listen on and the path of the account's loopback ``redirect_uri``.

    Raises:
        UsageError: the redirect URI is not a loopback http URL with a fixed port.
    """
    parts = urlsplit(settings_of(account, TraktSettings).redirect_uri)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme != "http" or parts.hostname not in LOOPBACK_HOSTS or not port:
        raise UsageError(
            f"`login --browser` needs a loopback redirect_uri with a fixed port for account "
            f'{account.name!r}: set redirect_uri = "{EXAMPLE_REDIRECT}" in its config and '
            f"register the same URI in your Trakt app ({TRAKT_APPS})"
        )
    return port, parts.path or "/"


class TraktBrowserLogin:
    """Builds Trakt's authorize URL and trades the redirect's code (E3) for tokens."""

    def __init__(self, http: httpx.Client, account: Account) -> None:
        self._http = http
        self._account = account
        self._settings = settings_of(account, TraktSettings)

    @property
    def registered_redirect_uri(self) -> str:
        """The account's ``redirect_uri``, exactly as the Trakt app registers it.

        Raises:
            UsageError: it is not a loopback http URI with a fixed port.
        """
        loopback_redirect(self._account)
        return self._settings.redirect_uri

    def authorization_request(self, redirect_uri: str, state: str, challenge: str) -> str:
        """Return the URL the browser opens, on the OAuth host (``auth_url``)."""
        query = authorization_query(self._account.client_id, redirect_uri, state, challenge)
        return f"{self._settings.auth_url}/oauth/authorize?{urlencode(query)}"

    def exchange_code(self, code: str, *, verifier: str, redirect_uri: str, now: float) -> TokenSet:
        """Trade the code for tokens: the verifier instead of a client secret (Trakt's PKCE)."""
        what = "exchanging the authorization code"
        payload = {
            "code": code,
            "client_id": self._account.client_id,
            "redirect_uri": redirect_uri,
            "grant_type": "authorization_code",
            "code_verifier": verifier,
        }
        headers = {"trakt-api-key": self._account.client_id, "trakt-api-version": "2"}
        response = post(
            self._http,
            f"{self._settings.auth_url}/oauth/token",
            what=what,
            json_body=payload,
            headers=headers,
        )
        if response.status != 200:
            if error_code(response) == "invalid_grant":
                raise LoginFailed("Trakt no longer accepts this code; run `login --browser` again")
            raise_for_failure(response, what=what, now=now)
        return read_tokens(
            response,
            what=what,
            now=now,
            spent=Spent.LOGIN_CODE,
            endpoint_key="auth_url",
            generic=False,
            account=self._account.name,
        )
