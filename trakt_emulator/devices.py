"""Pending authorizations: device codes (E1/E2) and authorization codes (E3), without locking."""

from __future__ import annotations

import base64
import dataclasses
import enum
import hashlib
import re
import secrets
import string

_USER_CODE_ALPHABET = string.ascii_uppercase + string.digits
_VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")


class Poll(enum.IntEnum):
    """Outcome of one device-token poll, valued as its HTTP status."""

    APPROVED = 200
    PENDING = 400
    NOT_FOUND = 404
    USED = 409
    EXPIRED = 410
    DENIED = 418
    SLOW_DOWN = 429


@dataclasses.dataclass
class DeviceCode:
    """One device-flow login in progress."""

    device_code: str
    user_code: str
    client_id: str
    created_at: int
    expires_in: int
    interval: int
    last_poll: float | None = None
    pending_polls: int = 0
    user: str | None = None
    denied: bool = False
    used: bool = False

    def expired(self, now: int) -> bool:
        """E2.3 says strictly after `created + expires_in`."""
        return now > self.created_at + self.expires_in

    def status(self, now: int) -> str:
        """One word for inspection, in E2's precedence."""
        if self.expired(now):
            return "expired"
        if self.denied:
            return "denied"
        if self.used:
            return "used"
        return "approved" if self.user is not None else "pending"

    def summary(self, now: int) -> dict[str, object]:
        """Inspection view for tests."""
        return {
            "user_code": self.user_code,
            "device_code": self.device_code,
            "client_id": self.client_id,
            "created_at": self.created_at,
            "expires_in": self.expires_in,
            "interval": self.interval,
            "polls": self.pending_polls,
            "user": self.user,
            "status": self.status(now),
        }


@dataclasses.dataclass
class AuthCode:
    """An authorization code as the /oauth/authorize redirect would hand it out."""

    code: str
    client_id: str
    user: str
    redirect_uri: str
    code_challenge: str | None
    created_at: int
    expires_in: int
    used: bool = False


def s256(verifier: str) -> str:
    """The PKCE S256 transform (the only method Trakt supports)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class CodeStore:
    """Device codes by device code and by user code, and authorization codes."""

    def __init__(self) -> None:
        self.devices: dict[str, DeviceCode] = {}
        self.by_user_code: dict[str, DeviceCode] = {}
        self.auth_codes: dict[str, AuthCode] = {}

    def new_device(self, client_id: str, now: int, expires_in: int, interval: int) -> DeviceCode:
        """Create a pending device grant with fresh, unique codes."""
        user_code = _user_code()
        while user_code in self.by_user_code:
            user_code = _user_code()
        device = DeviceCode(secrets.token_hex(32), user_code, client_id, now, expires_in, interval)
        self.devices[device.device_code] = device
        self.by_user_code[user_code] = device
        return device

    def find_user_code(self, user_code: str) -> DeviceCode:
        """The device grant a person would type this code for; KeyError if none."""
        device = self.by_user_code.get(user_code.strip().upper())
        if device is None:
            raise KeyError(f"unknown user_code {user_code!r}")
        return device

    def poll(
        self,
        code: str,
        client_id: str,
        now: int,
        precise_now: float,
        auto_approve: int | None,
        auto_user: str,
    ) -> tuple[Poll, DeviceCode | None]:
        """Apply E2 checks 2-8 in order; the caller has already authenticated the client."""
        device = self.devices.get(code)
        if device is None or device.client_id != client_id:
            return Poll.NOT_FOUND, None
        return _advance(device, now, precise_now, auto_approve, auto_user), device

    def new_auth_code(
        self,
        client_id: str,
        user: str,
        redirect_uri: str,
        code_challenge: str | None,
        now: int,
        expires_in: int,
    ) -> AuthCode:
        """Stand in for the browser half of the authorization-code flow."""
        auth = AuthCode(
            secrets.token_hex(32), client_id, user, redirect_uri, code_challenge, now, expires_in
        )
        self.auth_codes[auth.code] = auth
        return auth

    def redeem(
        self,
        code: str,
        client_id: str,
        redirect_uri: object,
        verifier: object,
        now: int,
    ) -> AuthCode | str:
        """Spend an authorization code (E3), or say why not."""
        auth = self.auth_codes.get(code)
        if auth is None or auth.used or auth.client_id != client_id:
            return "authorization code not found"
        if now > auth.created_at + auth.expires_in:
            return "authorization code expired"
        if redirect_uri != auth.redirect_uri:
            return "redirect_uri does not match"
        problem = _pkce_problem(auth.code_challenge, verifier)
        if problem is not None:
            return problem
        auth.used = True
        return auth


def _advance(
    device: DeviceCode,
    now: int,
    precise_now: float,
    auto_approve: int | None,
    auto_user: str,
) -> Poll:
    settled = _settled(device, now)
    if settled is not None:
        return settled
    previous, device.last_poll = device.last_poll, precise_now
    if previous is not None and precise_now - previous < device.interval:
        return Poll.SLOW_DOWN
    if device.user is None and auto_approve is not None and device.pending_polls >= auto_approve:
        device.user = auto_user
    if device.user is None:
        device.pending_polls += 1
        return Poll.PENDING
    device.used = True
    return Poll.APPROVED


def _settled(device: DeviceCode, now: int) -> Poll | None:
    if device.expired(now):
        return Poll.EXPIRED
    if device.denied:
        return Poll.DENIED
    if device.used:
        return Poll.USED
    return None


def _pkce_problem(challenge: str | None, verifier: object) -> str | None:
    if challenge is None:
        if verifier is None:
            return None
        return "code_verifier sent for a code issued without a code_challenge"
    if not isinstance(verifier, str) or not _VERIFIER.fullmatch(verifier):
        return "code_verifier missing or malformed"
    if s256(verifier) != challenge:
        return "code_verifier does not match code_challenge"
    return None


def _user_code() -> str:
    return "".join(secrets.choice(_USER_CODE_ALPHABET) for _ in range(8))
