"""Emulator options: one mutable record, validated by name and type on every change."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

ACCESS_TTL = 604_800
DEVICE_EXPIRES_IN = 600
DEVICE_INTERVAL = 5
VERIFICATION_URL = "https://trakt.tv/activate"


@dataclasses.dataclass
class Options:
    """Every behaviour switch of the emulator (see trakt-api.md, "Emulator spec")."""

    access_ttl: int = ACCESS_TTL
    refresh_ttl: int | None = None
    device_expires_in: int = DEVICE_EXPIRES_IN
    device_interval: int = DEVICE_INTERVAL
    auth_code_expires_in: int = 600
    verification_url: str = VERIFICATION_URL
    auto_approve_after_polls: int | None = None
    auto_approve_user: str = "demo"
    # The Trakt app's registered redirect URIs, space-separated; /oauth/authorize accepts
    # exactly these (Trakt: "case-sensitive and must exactly match").
    redirect_uris: str = "urn:ietf:wg:oauth:2.0:oob"
    cf_require_user_agent: bool = True
    legacy_401: bool = False
    legacy_doorkeeper_text: bool = False
    reuse_revokes_family: bool = False
    revoke_kills_refresh: bool = True
    revoke_old_access_on_refresh: bool = False
    migration_mode_400: bool = False
    request_log_limit: int = 10_000

    def update(self, changes: Mapping[str, object]) -> None:
        """Apply all changes or none, so a typo never leaves a half-configured emulator."""
        checked = {name: _check(name, value) for name, value in changes.items()}
        for name, value in checked.items():
            setattr(self, name, value)

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready copy."""
        return dataclasses.asdict(self)


# With postponed annotations the field types are the source strings, e.g. "int | None".
_TYPES = {field.name: str(field.type) for field in dataclasses.fields(Options)}


def _check(name: str, value: object) -> object:
    declared = _TYPES.get(name)
    if declared is None:
        raise ValueError(f"unknown option {name!r}; known: {', '.join(sorted(_TYPES))}")
    if value is None and declared.endswith("| None"):
        return None
    base = declared.split(" |")[0]
    if base == "bool":
        ok = isinstance(value, bool)
    elif base == "int":
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
    else:
        ok = isinstance(value, str)
    if not ok:
        raise ValueError(f"option {name!r} must be {declared} (>= 0 for numbers), got {value!r}")
    return value
