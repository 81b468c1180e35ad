"""The Microsoft identity platform (v2.0 endpoints) as its documentation describes it.

From learn.microsoft.com/entra/identity-platform:

* "OAuth 2.0 device authorization grant": ``POST /{tenant}/oauth2/v2.0/devicecode`` (client_id,
  scope) answers ``verification_uri``, ``expires_in`` 900, ``interval`` and a ``message``;
  polling ``/token`` with ``device_code`` answers HTTP 400 ``authorization_pending``,
  ``authorization_declined`` (its word for RFC 8628's access_denied), ``bad_verification_code``
  and ``expired_token``.
* Every error body is Microsoft's: ``error``, ``error_description`` starting "AADSTSnnnnn:",
  ``error_codes``, ``timestamp``, ``trace_id``, ``correlation_id``, ``error_uri``
  ("Microsoft Entra authentication and authorization error codes").
* "Refresh the access token": a refresh token is issued only for ``offline_access``; every
  refresh answers a new one (rotation; the old one is not revoked by it); a revoked grant is
  400 ``invalid_grant`` AADSTS50173. A public client (no secret, "Allow public client flows")
  that sends a client_secret is refused with AADSTS700025. There is no revocation endpoint.
* Azure AD v1 and AD FS send numbers as strings ("expires_in": "3599"), which
  ``numbers_as_strings`` reproduces in the answers of the endpoints it names ("devicecode",
  "token").
"""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from dataclasses import dataclass, field

from tests.support.provider_emulator import (
    Reply,
    Request,
    ServedEmulator,
    json_reply,
    random_text,
)

USER = "alice@outlook.com"
IMAP_SCOPE = "https://outlook.office.com/IMAP.AccessAsUser.All"
SMTP_SCOPE = "https://outlook.office.com/SMTP.Send"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
ACCESS_TOKEN_TTL = 3599
DEVICE_CODE_TTL = 900
# An access token is a JWT of well over a thousand characters; base64url with two dots.
JWT_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@dataclass
class Grant:
    scope: str
    refresh_tokens: list[str]  # every one issued; all still valid until the grant is revoked
    access_tokens: list[str] = field(default_factory=list)
    revoked: bool = False


@dataclass
class DeviceCode:
    scope: str
    user_code: str
    state: str = "pending"  # approved, declined, redeemed, expired


def aad_error(status: int, error: str, code: int | None, text: str) -> Reply:
    """A Microsoft error body, with the AADSTS code in the description and in error_codes."""
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    trace, correlation = uuid.uuid4(), uuid.uuid4()
    prefix = f"AADSTS{code}: " if code is not None else ""
    body: dict[str, object] = {
        "error": error,
        "error_description": (
            f"{prefix}{text}\r\nTrace ID: {trace}\r\nCorrelation ID: {correlation}\r\n"
            f"Timestamp: {now}"
        ),
        "error_codes": [code] if code is not None else [],
        "timestamp": now,
        "trace_id": str(trace),
        "correlation_id": str(correlation),
    }
    if code is not None:
        body["error_uri"] = f"https://login.microsoftonline.com/error?code={code}"
    return json_reply(status, body)


class MicrosoftEmulator(ServedEmulator):
    """login.microsoftonline.com for one public client registration."""

    def __init__(
        self,
        *,
        tenant: str = "common",
        device_interval: int = 1,
        numbers_as_strings: tuple[str, ...] = (),
    ) -> None:
        self.tenant = tenant
        self.device_interval = device_interval
        self.numbers_as_strings = numbers_as_strings
        self.client_id = str(uuid.uuid4())  # a public client: "Allow public client flows"
        self.grants: list[Grant] = []
        self.devices: dict[str, DeviceCode] = {}
        self._lock = threading.Lock()

    def endpoint(self, name: str) -> str:
        return f"{self.url}/{self.tenant}/oauth2/v2.0/{name}"

    @property
    def token_url(self) -> str:
        return self.endpoint("token")

    @property
    def device_authorization_url(self) -> str:
        return self.endpoint("devicecode")

    def approve_device(self, user_code: str) -> None:
        self._decide(user_code, "approved")

    def decline_device(self, user_code: str) -> None:
        self._decide(user_code, "declined")

    def _decide(self, user_code: str, state: str) -> None:
        with self._lock:
            for device in self.devices.values():
                if device.user_code == user_code and device.state == "pending":
                    device.state = state
                    return
        raise AssertionError(f"no pending device code {user_code}")

    def revoke_all(self) -> None:
        """The user changes the password: every refresh token of the account is revoked."""
        with self._lock:
            for grant in self.grants:
                grant.revoked = True

    def is_active(self, access_token: str) -> bool:
        """What Outlook's SMTP server asks: a live access token with SMTP.Send?"""
        with self._lock:
            return any(
                access_token in grant.access_tokens
                and not grant.revoked
                and SMTP_SCOPE in grant.scope.split()
                for grant in self.grants
            )

    def secrets(self) -> set[str]:
        found = set(self.devices)
        for grant in self.grants:
            found.update(grant.access_tokens, grant.refresh_tokens)
        return found

    def _number(self, value: int, endpoint: str) -> int | str:
        return str(value) if endpoint in self.numbers_as_strings else value

    def handle(self, request: Request) -> Reply:
        with self._lock:
            prefix = f"/{self.tenant}/oauth2/v2.0/"
            if request.method != "POST" or not request.path.startswith(prefix):
                return aad_error(404, "invalid_request", 90002, "Tenant not found.")
            client = self._client(request)
            if client is not None:
                return client
            name = request.path.removeprefix(prefix)
            if name == "devicecode":
                return self._device_code(request)
            if name == "token":
                return self._token(request)
            return aad_error(404, "invalid_request", 900561, "The endpoint only accepts POST.")

    def _client(self, request: Request) -> Reply | None:
        """A public client names itself with client_id and must not send a secret."""
        client_id = request.form.get("client_id")
        if client_id is None:
            return aad_error(
                400,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'client_id'.",
            )
        if client_id != self.client_id:
            return aad_error(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory.",
            )
        if "client_secret" in request.form or "authorization" in request.headers:
            return aad_error(
                401,
                "invalid_client",
                700025,
                "Client is public so neither 'client_assertion' nor 'client_secret' should be "
                "presented.",
            )
        return None

    def _device_code(self, request: Request) -> Reply:
        scope = request.form.get("scope", "")
        if not scope:
            return aad_error(
                400,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'scope'.",
            )
        device_code = "DAQABAAEAAAD" + random_text(200)
        user_code = random_text(9, "ABCDEFGHJKLMNPQRSTUVWXYZ23456789")
        self.devices[device_code] = DeviceCode(scope, user_code)
        return json_reply(
            200,
            {
                "user_code": user_code,
                "device_code": device_code,
                "verification_uri": "https://microsoft.com/devicelogin",
                "expires_in": self._number(DEVICE_CODE_TTL, "devicecode"),
                "interval": self._number(self.device_interval, "devicecode"),
                "message": (
                    "To sign in, use a web browser to open the page "
                    f"https://microsoft.com/devicelogin and enter the code {user_code} to "
                    "authenticate."
                ),
            },
        )

    def _token(self, request: Request) -> Reply:
        grant_type = request.form.get("grant_type")
        if grant_type == DEVICE_GRANT:
            return self._poll(request.form.get("device_code", ""))
        if grant_type == "refresh_token":
            return self._refresh(request.form.get("refresh_token", ""))
        return aad_error(
            400,
            "unsupported_grant_type",
            70003,
            f"The app requested an unsupported grant type '{grant_type}'.",
        )

    def _poll(self, device_code: str) -> Reply:
        device = self.devices.get(device_code)
        if device is None:
            return aad_error(
                400,
                "bad_verification_code",
                70000,
                "The provided value for 'device_code' is not valid.",
            )
        if device.state == "redeemed":
            return aad_error(
                400, "invalid_grant", 54005, "OAuth2 Authorization code was already redeemed."
            )
        if device.state == "pending":
            return aad_error(
                400,
                "authorization_pending",
                70016,
                "OAuth 2.0 device flow error. Authorization is pending. Continue polling.",
            )
        if device.state == "declined":
            return aad_error(
                400,
                "authorization_declined",
                None,
                "The end user denied the authorization request.",
            )
        if device.state == "expired":
            return aad_error(
                400,
                "expired_token",
                70019,
                "Verification code expired. Have the user retry the sign-in.",
            )
        device.state = "redeemed"
        scopes = device.scope.split()
        with_refresh = "offline_access" in scopes
        granted = " ".join(scope for scope in scopes if scope != "offline_access")
        grant = Grant(granted, [])
        self.grants.append(grant)
        return json_reply(200, self._tokens(grant, with_refresh=with_refresh))

    def _tokens(self, grant: Grant, *, with_refresh: bool) -> dict[str, object]:
        access = ".".join(random_text(n, JWT_ALPHABET) for n in (120, 1200, 342))
        grant.access_tokens.append(access)
        body: dict[str, object] = {
            "token_type": "Bearer",
            "scope": grant.scope,
            "expires_in": self._number(ACCESS_TOKEN_TTL, "token"),
            "ext_expires_in": self._number(ACCESS_TOKEN_TTL, "token"),
            "access_token": access,
        }
        if with_refresh:
            refresh = "M.C5" + random_text(400, JWT_ALPHABET + "*!$")
            grant.refresh_tokens.append(refresh)
            body["refresh_token"] = refresh
        return body

    def _refresh(self, refresh_token: str) -> Reply:
        for grant in self.grants:
            if refresh_token in grant.refresh_tokens:
                if grant.revoked:
                    return aad_error(
                        400,
                        "invalid_grant",
                        50173,
                        "The provided grant has expired due to it being revoked, a fresh auth "
                        "token is needed. The user might have changed or reset their password.",
                    )
                return json_reply(200, self._tokens(grant, with_refresh=True))
        return aad_error(
            400, "invalid_grant", 9002313, "Invalid request. Request is malformed or invalid."
        )
