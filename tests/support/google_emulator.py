"""Google's OAuth 2.0 as its documentation describes it, on a loopback port.

From developers.google.com/identity/protocols/oauth2:

* "OAuth 2.0 for TV and Limited-Input Device Applications": ``POST /device/code`` (client_id,
  scope) answers ``verification_url`` (not RFC 8628's ``verification_uri``); only a "TVs and
  Limited Input devices" client may use it ("invalid_client ... the OAuth client type is
  incorrect"); only the scopes of its "Allowed scopes" list, so Gmail's is ``invalid_scope``.
  Polling: HTTP 428 ``authorization_pending``, 403 ``slow_down``, 403 ``access_denied``, 400
  ``expired_token``; a redeemed device code is ``invalid_grant``.
* "OAuth 2.0 for Mobile & Desktop Apps": ``GET /o/oauth2/v2/auth`` with a loopback redirect
  (any port) for a "Desktop app" client, PKCE optional (S256 or plain); a refresh token only
  for ``access_type=offline``, and to a user who consented before only with
  ``prompt=consent``. The code exchange and the refresh take client_id and client_secret (in
  the body, or HTTP Basic); a refresh answers no new refresh token (no rotation); a revoked or
  unknown one is 400 ``invalid_grant`` "Token has been expired or revoked.".
* Revocation, ``POST /revoke`` with ``token``: 200, or 400 ``invalid_token``; revoking either
  token of a grant revokes the grant.

The emulator plays the user too: ``approve_device``/``deny_device`` a user code, and the
authorization endpoint consents as ``USER`` (or denies, after ``deny_next_login``).
"""

from __future__ import annotations

import base64
import hashlib
import threading
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlsplit

from tests.support.provider_emulator import (
    Reply,
    Request,
    ServedEmulator,
    basic_credentials,
    json_reply,
    random_text,
    redirect,
)

USER = "alice@gmail.com"
GMAIL_SCOPE = "https://mail.google.com/"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
# The device flow's "Allowed scopes" (the identity ones and a few Drive/YouTube ones).
DEVICE_SCOPES = frozenset(
    {
        "openid",
        "email",
        "profile",
        "https://www.googleapis.com/auth/userinfo.email",
        "https://www.googleapis.com/auth/userinfo.profile",
        "https://www.googleapis.com/auth/drive.appdata",
        "https://www.googleapis.com/auth/drive.file",
        "https://www.googleapis.com/auth/youtube",
        "https://www.googleapis.com/auth/youtube.readonly",
    }
)
ACCESS_TOKEN_TTL = 3599
DEVICE_CODE_TTL = 1800
LOOPBACK = ("127.0.0.1", "::1", "localhost")


@dataclass(frozen=True)
class GoogleClient:
    client_id: str
    client_secret: str
    kind: str  # "desktop" (Desktop app) or "tv" (TVs and Limited Input devices)


@dataclass
class Grant:
    client_id: str
    scope: str
    refresh_token: str | None
    access_tokens: list[str] = field(default_factory=list)
    revoked: bool = False


@dataclass
class DeviceCode:
    client_id: str
    scope: str
    user_code: str
    state: str = "pending"  # approved, denied, redeemed, expired


@dataclass
class AuthCode:
    client_id: str
    redirect_uri: str
    scope: str
    challenge: str | None
    method: str
    offline: bool
    issue_refresh: bool


def _error(status: int, error: str, description: str) -> Reply:
    return json_reply(status, {"error": error, "error_description": description})


class GoogleEmulator(ServedEmulator):
    """Google's authorization server (accounts.google.com and oauth2.googleapis.com)."""

    def __init__(self, *, device_interval: int = 1) -> None:
        self.device_interval = device_interval
        self.desktop = GoogleClient(
            f"{random_text(12, '0123456789')}-desktop.apps.googleusercontent.com",
            f"GOCSPX-{random_text(28)}",
            "desktop",
        )
        self.tv = GoogleClient(
            f"{random_text(12, '0123456789')}-tv.apps.googleusercontent.com",
            f"GOCSPX-{random_text(28)}",
            "tv",
        )
        self.clients = {client.client_id: client for client in (self.desktop, self.tv)}
        self.grants: list[Grant] = []
        self.devices: dict[str, DeviceCode] = {}
        self.codes: dict[str, AuthCode] = {}
        self.consented: set[tuple[str, str]] = set()  # (client_id, scope) the user allowed
        self.slow_down_polls = 0  # the next polls answered slow_down
        self.deny_next_login = False
        self._lock = threading.Lock()

    # Endpoints, as the config names them.
    @property
    def authorization_url(self) -> str:
        return f"{self.url}/o/oauth2/v2/auth"

    @property
    def token_url(self) -> str:
        return f"{self.url}/token"

    @property
    def device_authorization_url(self) -> str:
        return f"{self.url}/device/code"

    @property
    def revocation_url(self) -> str:
        return f"{self.url}/revoke"

    # The user, and what the tests look at.
    def approve_device(self, user_code: str) -> None:
        self._decide(user_code, "approved")

    def deny_device(self, user_code: str) -> None:
        self._decide(user_code, "denied")

    def _decide(self, user_code: str, state: str) -> None:
        with self._lock:
            for device in self.devices.values():
                if device.user_code == user_code and device.state == "pending":
                    device.state = state
                    return
        raise AssertionError(f"no pending device code {user_code}")

    def is_active(self, access_token: str) -> bool:
        """What Gmail's SMTP server asks: is this a live access token for the mail scope?"""
        with self._lock:
            return any(
                access_token in grant.access_tokens
                and not grant.revoked
                and GMAIL_SCOPE in grant.scope.split()
                for grant in self.grants
            )

    def secrets(self) -> set[str]:
        found = {self.desktop.client_secret, self.tv.client_secret, *self.devices, *self.codes}
        for grant in self.grants:
            found.update(grant.access_tokens)
            if grant.refresh_token:
                found.add(grant.refresh_token)
        return found

    def handle(self, request: Request) -> Reply:
        with self._lock:
            if request.path == "/o/oauth2/v2/auth" and request.method == "GET":
                return self._authorize(request)
            if request.method != "POST":
                return Reply(405, b"Method Not Allowed")
            if request.path == "/device/code":
                return self._device_code(request)
            if request.path == "/token":
                return self._token(request)
            if request.path == "/revoke":
                return self._revoke(request)
            return Reply(404, b"<!DOCTYPE html><title>Error 404 (Not Found)!!1</title>")

    def _device_code(self, request: Request) -> Reply:
        client = self.clients.get(request.form.get("client_id", ""))
        if client is None:
            return _error(401, "invalid_client", "The OAuth client was not found.")
        if client.kind != "tv":
            return _error(401, "invalid_client", "Invalid client type.")
        scopes = request.form.get("scope", "").split()
        if not scopes or not set(scopes) <= DEVICE_SCOPES:
            return _error(400, "invalid_scope", "Invalid device flow scope: " + " ".join(scopes))
        device_code = "4/" + random_text(43)
        user_code = (
            f"{random_text(4, 'BCDFGHJKLMNPQRSTVWXZ')}-{random_text(4, 'BCDFGHJKLMNPQRSTVWXZ')}"
        )
        self.devices[device_code] = DeviceCode(client.client_id, " ".join(scopes), user_code)
        return json_reply(
            200,
            {
                "device_code": device_code,
                "user_code": user_code,
                "verification_url": "https://www.google.com/device",
                "expires_in": DEVICE_CODE_TTL,
                "interval": self.device_interval,
            },
        )

    def _client(self, request: Request) -> GoogleClient | Reply:
        """Authenticate the client: client_id and client_secret, in the body or Basic."""
        basic = basic_credentials(request)
        client_id, secret = basic or (
            request.form.get("client_id", ""),
            request.form.get("client_secret"),
        )
        if basic and request.form.get("client_id", client_id) != client_id:
            return _error(400, "invalid_request", "client_id mismatch.")
        client = self.clients.get(client_id)
        if client is None:
            return _error(401, "invalid_client", "The OAuth client was not found.")
        if secret is None:
            return _error(400, "invalid_request", "client_secret is missing.")
        if secret != client.client_secret:
            return _error(401, "invalid_client", "Unauthorized")
        return client

    def _token(self, request: Request) -> Reply:
        client = self._client(request)
        if isinstance(client, Reply):
            return client
        grant_type = request.form.get("grant_type")
        if grant_type == DEVICE_GRANT:
            return self._poll(client, request.form.get("device_code", ""))
        if grant_type == "authorization_code":
            return self._exchange(client, request)
        if grant_type == "refresh_token":
            return self._refresh(client, request.form.get("refresh_token", ""))
        return _error(400, "unsupported_grant_type", f"Invalid grant_type: {grant_type}")

    def _issue(self, client_id: str, scope: str, *, with_refresh: bool) -> dict[str, object]:
        refresh = "1//0g" + random_text(98) if with_refresh else None
        grant = Grant(client_id, scope, refresh, ["ya29." + random_text(160)])
        self.grants.append(grant)
        body: dict[str, object] = {
            "access_token": grant.access_tokens[0],
            "expires_in": ACCESS_TOKEN_TTL,
            "scope": scope,
            "token_type": "Bearer",
        }
        if refresh:
            body["refresh_token"] = refresh
        return body

    def _poll(self, client: GoogleClient, device_code: str) -> Reply:
        device = self.devices.get(device_code)
        if device is None or device.client_id != client.client_id or device.state == "redeemed":
            return _error(400, "invalid_grant", "Malformed auth code.")
        if self.slow_down_polls > 0:
            self.slow_down_polls -= 1
            return _error(403, "slow_down", "Forbidden")
        if device.state == "pending":
            return _error(428, "authorization_pending", "Precondition Required")
        if device.state == "denied":
            return _error(403, "access_denied", "Forbidden")
        if device.state == "expired":
            return _error(400, "expired_token", "Bad Request")
        device.state = "redeemed"
        return json_reply(200, self._issue(client.client_id, device.scope, with_refresh=True))

    def _authorize(self, request: Request) -> Reply:
        query = request.query
        page = self._refused_page(query)
        if page is not None:
            return page
        client = self.clients[query["client_id"]]
        redirect_uri = query["redirect_uri"]
        access_type = query.get("access_type", "online")
        prompt = query.get("prompt", "")
        method = query.get("code_challenge_method", "plain")
        back = {"state": query["state"]} if "state" in query else {}
        scope = query.get("scope", "")
        if not scope or "offline_access" in scope.split():
            return redirect(f"{redirect_uri}?{urlencode({**back, 'error': 'invalid_scope'})}")
        if self.deny_next_login:
            self.deny_next_login = False
            return redirect(f"{redirect_uri}?{urlencode({**back, 'error': 'access_denied'})}")
        # A refresh token on the first consent, or when consent is asked for again.
        before = (client.client_id, scope) in self.consented
        issue_refresh = access_type == "offline" and (not before or "consent" in prompt.split())
        self.consented.add((client.client_id, scope))
        code = "4/0A" + random_text(70)
        self.codes[code] = AuthCode(
            client.client_id,
            redirect_uri,
            scope,
            query.get("code_challenge"),
            method,
            access_type == "offline",
            issue_refresh,
        )
        return redirect(f"{redirect_uri}?{urlencode({**back, 'code': code, 'scope': scope})}")

    def _refused_page(self, query: dict[str, str]) -> Reply | None:
        """Google shows an error page, not a redirect, for a request it cannot trust."""
        client = self.clients.get(query.get("client_id", ""))
        if client is None:
            return Reply(401, b"<!DOCTYPE html><p>Error 401: invalid_client</p>")
        parts = urlsplit(query.get("redirect_uri", ""))
        if client.kind != "desktop" or parts.scheme != "http" or parts.hostname not in LOOPBACK:
            return Reply(400, b"<!DOCTYPE html><p>Error 400: redirect_uri_mismatch</p>")
        valid = (
            query.get("response_type") == "code"
            and query.get("access_type", "online") in ("online", "offline")
            and query.get("code_challenge_method", "plain") in ("S256", "plain")
        )
        if not valid:
            return Reply(400, b"<!DOCTYPE html><p>Error 400: invalid_request</p>")
        return None

    def _exchange(self, client: GoogleClient, request: Request) -> Reply:
        code = self.codes.pop(request.form.get("code", ""), None)
        if code is None or code.client_id != client.client_id:
            return _error(400, "invalid_grant", "Malformed auth code.")
        if request.form.get("redirect_uri") != code.redirect_uri:
            return _error(400, "redirect_uri_mismatch", "Bad Request")
        if code.challenge is not None:
            verifier = request.form.get("code_verifier", "")
            if code.method == "S256":
                digest = hashlib.sha256(verifier.encode()).digest()
                verifier = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
            if verifier != code.challenge:
                return _error(400, "invalid_grant", "Invalid code verifier.")
        body = self._issue(client.client_id, code.scope, with_refresh=code.issue_refresh)
        return json_reply(200, body)

    def _refresh(self, client: GoogleClient, refresh_token: str) -> Reply:
        for grant in self.grants:
            if grant.refresh_token == refresh_token and grant.client_id == client.client_id:
                if grant.revoked:
                    break
                grant.access_tokens.append("ya29." + random_text(160))
                # No refresh_token: Google does not rotate it.
                return json_reply(
                    200,
                    {
                        "access_token": grant.access_tokens[-1],
                        "expires_in": ACCESS_TOKEN_TTL,
                        "scope": grant.scope,
                        "token_type": "Bearer",
                    },
                )
        return _error(400, "invalid_grant", "Token has been expired or revoked.")

    def _revoke(self, request: Request) -> Reply:
        token = request.form.get("token") or request.query.get("token", "")
        for grant in self.grants:
            if not grant.revoked and (token == grant.refresh_token or token in grant.access_tokens):
                grant.revoked = True
                return Reply(200, b"", {"Content-Type": "application/json; charset=utf-8"})
        return _error(400, "invalid_token", "Token expired or revoked")

    def revoke_all(self) -> None:
        """The user removes the app at myaccount.google.com/connections."""
        with self._lock:
            for grant in self.grants:
                grant.revoked = True
