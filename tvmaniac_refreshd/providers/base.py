"""The one interface every provider dialect implements, and the shapes its answers take.

The rest of the program holds a ``Provider`` and never asks which one it is: logins, refreshes,
revocation and every sentence that names the provider go through here. A new dialect (or a new
way to log in) is a new class in this folder plus a line in ``factory.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

from tvmaniac_refreshd.core.tokens import TokenSet


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


@dataclass(frozen=True)
class Wording:
    """How the user knows this provider: every sentence that names it is built from these."""

    name: str  # "Trakt", or the host of a generic OAuth2 server
    # Where the user sees and removes the apps connected to the account, e.g. after a failed revoke.
    manage_apps: str
    # What logging in again means there, for a notification or an error.
    relogin: str


# A user name longer than this is not one; the rest is cut before it is stored or shown.
MAX_USER_NAME = 128


def user_name(value: object) -> str | None:
    """Return a provider's user name fit to store and show (visible characters, capped), or
    None if ``value`` is none."""
    if not isinstance(value, str):
        return None
    shown = "".join(ch for ch in value if ch.isprintable())[:MAX_USER_NAME].strip()
    return shown or None


class BrowserLogin(Protocol):
    """The authorization-code login with PKCE (RFC 7636), for providers that offer it.

    ``browser_login.py`` runs the loopback redirect; the provider only builds the URL and
    trades the code.
    """

    @property
    def registered_redirect_uri(self) -> str | None:
        """The one redirect URI the provider accepts (its port is the one listened on), or
        None: any loopback port will do (RFC 8252, section 7.3).

        Raises:
            UsageError: the configured URI cannot be a loopback redirect.
        """
        ...

    def authorization_request(self, redirect_uri: str, state: str, challenge: str) -> str:
        """Return the URL the browser opens."""
        ...

    def exchange_code(self, code: str, *, verifier: str, redirect_uri: str, now: float) -> TokenSet:
        """Trade the redirect's code for tokens."""
        ...


class Provider(Protocol):
    """One account's provider: its logins, refresh, revocation and wording.

    Every method raises only the project's errors (core/errors.py): SessionRejected,
    ClientRejected, TransientError, LoginFailed, or another named RefreshdError subclass.
    """

    @property
    def wording(self) -> Wording: ...

    @property
    def has_device_login(self) -> bool:
        """Whether ``request_device_code`` can work with this account's config."""
        ...

    def browser(self) -> BrowserLogin | None:
        """Return the browser login, or None where the provider (or config) has none."""
        ...

    def request_device_code(self, *, now: float) -> DeviceCode:
        """Start a device login (RFC 8628, or the provider's variant)."""
        ...

    def poll_device_token(self, device: DeviceCode, *, now: float) -> TokenSet | PollState:
        """Ask once whether the user approved ``device``."""
        ...

    def refresh(self, refresh_token: str, *, now: float) -> TokenSet:
        """Spend ``refresh_token`` for a new token pair."""
        ...

    def revoke(self, tokens: TokenSet, *, now: float) -> None:
        """End the grant at the provider."""
        ...

    def identity(self, tokens: TokenSet, *, now: float) -> str | None:
        """Return who logged in with ``tokens`` (the provider's user name), or None where the
        provider does not say; shown after a login so that a wrong account is visible.

        Raises:
            TransientError, SessionRejected, RefreshdError: the question could not be asked.
        """
        ...
