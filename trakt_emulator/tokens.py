"""Grants and the tokens they issue: rotation, revocation and look-ups (callers hold the lock)."""

from __future__ import annotations

import dataclasses
import secrets


def new_token() -> str:
    """64 hex characters, the shape of Trakt's access and refresh tokens."""
    return secrets.token_hex(32)


@dataclasses.dataclass(frozen=True)
class TokenSet:
    """What one successful exchange returns (E5)."""

    access_token: str
    refresh_token: str
    created_at: int
    expires_in: int

    def as_json(self) -> dict[str, object]:
        """The token response body; every field is always present."""
        return {
            "access_token": self.access_token,
            "token_type": "bearer",
            "expires_in": self.expires_in,
            "refresh_token": self.refresh_token,
            "scope": "public",
            "created_at": self.created_at,
        }


@dataclasses.dataclass
class AccessToken:
    """One issued access token; older ones may outlive a rotation (revoke_old_access_on_refresh)."""

    value: str
    created_at: int
    expires_in: int
    revoked: bool = False
    forced_expired: bool = False

    def valid_at(self, now: int) -> bool:
        """Usable at `now`: Trakt treats `created_at + expires_in` as already expired."""
        live = not (self.revoked or self.forced_expired)
        return live and now < self.created_at + self.expires_in


@dataclasses.dataclass
class Grant:
    """One user's authorization of one client: a chain of access tokens and single-use refreshes."""

    id: int
    user: str
    client_id: str
    refresh_token: str
    refresh_created_at: int
    access: list[AccessToken]
    rotated_refresh: list[str] = dataclasses.field(default_factory=list)
    revoked: bool = False

    @property
    def current_access(self) -> AccessToken:
        """The most recently issued access token."""
        return self.access[-1]

    def summary(self, now: int) -> dict[str, object]:
        """Inspection view for tests: current tokens plus every rotated-out one."""
        current = self.current_access
        return {
            "id": self.id,
            "user": self.user,
            "client_id": self.client_id,
            "access_token": current.value,
            "refresh_token": self.refresh_token,
            "created_at": current.created_at,
            "expires_in": current.expires_in,
            "expires_at": current.created_at + current.expires_in,
            "access_valid": current.valid_at(now) and not self.revoked,
            "revoked": self.revoked,
            "rotated_access_tokens": [token.value for token in self.access[:-1]],
            "rotated_refresh_tokens": list(self.rotated_refresh),
        }


class GrantStore:
    """Every grant ever issued, indexed by each token it ever held."""

    def __init__(self) -> None:
        self.grants: list[Grant] = []
        self.legacy: set[str] = set()
        self._by_access: dict[str, tuple[Grant, AccessToken]] = {}
        self._by_refresh: dict[str, Grant] = {}

    def issue(
        self,
        user: str,
        client_id: str,
        now: int,
        expires_in: int,
        access_token: str | None = None,
        refresh_token: str | None = None,
    ) -> Grant:
        """Start a new grant; explicit tokens let a test seed a pair it also stores elsewhere."""
        access_value = access_token or new_token()
        refresh_value = refresh_token or new_token()
        if access_value in self._by_access or refresh_value in self._by_refresh:
            raise ValueError("token already issued")
        if access_value == refresh_value:
            raise ValueError("access and refresh tokens must differ")
        access = AccessToken(access_value, now, expires_in)
        grant = Grant(len(self.grants) + 1, user, client_id, refresh_value, now, [access])
        self.grants.append(grant)
        self._by_access[access_value] = (grant, access)
        self._by_refresh[refresh_value] = grant
        return grant

    def rotate(self, grant: Grant, now: int, expires_in: int, revoke_old_access: bool) -> TokenSet:
        """Spend the current refresh token: it is dead from this instant, with no grace window."""
        if revoke_old_access:
            for old in grant.access:
                old.revoked = True
        access = AccessToken(new_token(), now, expires_in)
        grant.access.append(access)
        grant.rotated_refresh.append(grant.refresh_token)
        grant.refresh_token = new_token()
        grant.refresh_created_at = now
        self._by_access[access.value] = (grant, access)
        self._by_refresh[grant.refresh_token] = grant
        return self.token_set(grant)

    @staticmethod
    def token_set(grant: Grant) -> TokenSet:
        """The grant's current pair as a token response."""
        current = grant.current_access
        return TokenSet(current.value, grant.refresh_token, current.created_at, current.expires_in)

    def by_refresh(self, token: str) -> Grant | None:
        """The grant that ever held this refresh token, current or rotated out."""
        return self._by_refresh.get(token)

    def by_access(self, token: str) -> tuple[Grant, AccessToken] | None:
        """The grant and record of an access token."""
        return self._by_access.get(token)

    def for_user(self, user: str) -> list[Grant]:
        """All of a user's grants (a user may have logged in more than once)."""
        return [grant for grant in self.grants if grant.user == user]

    @staticmethod
    def revoke(grant: Grant) -> None:
        """Kill the whole grant, as when the user removes the app."""
        grant.revoked = True
        for token in grant.access:
            token.revoked = True
