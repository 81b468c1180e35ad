"""Presets: what works for the providers people use for mail, under one name.

``preset = "google"`` or ``preset = "microsoft"`` (with ``tenant``) in an account fills in every
key the account leaves out: the endpoints, the scopes a mail client needs, the login flow that
works there and the client authentication. A key the account sets wins. ``wrong_combinations``
then explains the settings those providers refuse, with or without a preset, so `config check`
says so before a login fails at the provider.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from tvmaniac_refreshd.config.values import Problems

GMAIL_SCOPE = "https://mail.google.com/"
# Microsoft: a tenant id (a GUID), a domain, or common / organizations / consumers.
TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,99}")


@dataclass(frozen=True)
class Preset:
    """One provider's working settings, as config keys and TOML values."""

    name: str  # how the provider is named to the user
    keys: Mapping[str, object]  # "{tenant}" in a string is replaced by the account's tenant
    hosts: tuple[str, ...]  # its endpoints' hosts: a hand-written config is recognised by them
    manage_apps: str  # where the user sees and removes the apps connected to the account


PRESETS: dict[str, Preset] = {
    # Google: "OAuth 2.0 for Mobile & Desktop Apps" (the loopback flow: endpoints,
    # access_type=offline for a refresh token, client_id and client_secret in the POST body;
    # "the client secret is obviously not treated as a secret" for installed apps), and
    # "OAuth 2.0 for TV and Limited-Input Device Applications", whose allowed scopes exclude
    # Gmail's: so the browser flow (no device_authorization_url). prompt=consent: a user who
    # consented before gets no new refresh token without it ("Refresh token expiration").
    "google": Preset(
        name="Google",
        keys={
            "provider": "oauth2",
            "authorization_url": "https://accounts.google.com/o/oauth2/v2/auth",
            "token_url": "https://oauth2.googleapis.com/token",
            "revocation_url": "https://oauth2.googleapis.com/revoke",
            "scopes": [GMAIL_SCOPE],
            "client_auth": "client_secret_post",
            "authorization_params": {"access_type": "offline", "prompt": "consent"},
        },
        hosts=("accounts.google.com", "oauth2.googleapis.com", "www.googleapis.com"),
        manage_apps="https://myaccount.google.com/connections",
    ),
    # Microsoft identity platform v2.0: "OAuth 2.0 device authorization grant" (the device
    # flow, for a public client: "Allow public client flows", no secret), "Authenticate an
    # IMAP, POP or SMTP connection using OAuth" (the scopes), and offline_access for a refresh
    # token ("Permissions and consent overview"). It has no RFC 7009 revocation endpoint.
    "microsoft": Preset(
        name="Microsoft",
        keys={
            "provider": "oauth2",
            "device_authorization_url": (
                "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/devicecode"
            ),
            "authorization_url": "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/authorize",
            "token_url": "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token",
            "scopes": [
                "https://outlook.office.com/IMAP.AccessAsUser.All",
                "https://outlook.office.com/SMTP.Send",
                "offline_access",
            ],
            "client_auth": "none",
        },
        hosts=("login.microsoftonline.com", "login.live.com", "login.windows.net"),
        manage_apps="https://myapps.microsoft.com (work) or https://account.live.com/consent/Manage",
    ),
}
DEFAULT_TENANT = "common"


class OAuth2Account(Protocol):
    """What of an oauth2 account's settings (config/variants.py) is looked at."""

    @property
    def preset(self) -> str | None: ...
    @property
    def token_url(self) -> str | None: ...
    @property
    def authorization_url(self) -> str | None: ...
    @property
    def device_authorization_url(self) -> str | None: ...
    @property
    def scopes(self) -> tuple[str, ...]: ...
    @property
    def authorization_params(self) -> tuple[tuple[str, str], ...]: ...


def apply_preset(table: Mapping[str, Any], prefix: str, problems: Problems) -> dict[str, Any]:
    """Return the account ``table`` with its preset's keys filled in where it sets none."""
    merged = dict(table)
    name = table.get("preset")
    if name is None:
        if "tenant" in table:
            problems.add(f"{prefix}tenant", 'only used with preset = "microsoft"')
        return merged
    preset = PRESETS.get(name) if isinstance(name, str) else None
    if preset is None:
        problems.add(f"{prefix}preset", f"{name!r} is not one of: {', '.join(sorted(PRESETS))}")
        return merged
    tenant = table.get("tenant", DEFAULT_TENANT)
    if "tenant" in table and name != "microsoft":
        problems.add(f"{prefix}tenant", 'only used with preset = "microsoft"')
    if not isinstance(tenant, str) or not TENANT.fullmatch(tenant):
        problems.add(
            f"{prefix}tenant",
            "expected a tenant id, a domain, or common, organizations or consumers",
        )
        tenant = DEFAULT_TENANT
    if table.get("provider", "oauth2") != "oauth2":
        problems.add(f"{prefix}provider", f'preset = "{name}" is an oauth2 provider')
    for key, value in preset.keys.items():
        if key not in merged:
            merged[key] = value.replace("{tenant}", tenant) if isinstance(value, str) else value
    return merged


def preset_of(account: OAuth2Account) -> Preset | None:
    """Return the account's preset, or the one whose endpoints a hand-written account uses."""
    if account.preset is not None:
        return PRESETS[account.preset]
    urls = (account.token_url, account.authorization_url, account.device_authorization_url)
    hosts = {urlsplit(url).hostname for url in urls if url}
    for preset in PRESETS.values():
        if hosts & set(preset.hosts):
            return preset
    return None


def wrong_combinations(account: OAuth2Account) -> list[tuple[str, str]]:
    """Return (key, explanation) for each setting the account's provider is known to refuse."""
    preset = preset_of(account)
    found: list[tuple[str, str]] = []
    if preset is PRESETS["google"]:
        if account.device_authorization_url and GMAIL_SCOPE in account.scopes:
            found.append(
                (
                    "device_authorization_url",
                    f"Google refuses the scope {GMAIL_SCOPE} in the device flow (invalid_scope:"
                    " its device flow allows a short list of scopes, mail is not one). Remove "
                    "this key: `login` then uses the browser flow",
                )
            )
        if "offline_access" in account.scopes:
            found.append(
                (
                    "scopes",
                    'Google has no "offline_access" scope (invalid_scope); it issues a refresh '
                    'token for access_type = "offline" in authorization_params instead, which '
                    'preset = "google" sends',
                )
            )
        params = dict(account.authorization_params)
        if account.authorization_url and params.get("access_type") != "offline":
            found.append(
                (
                    "authorization_params",
                    "Google issues a refresh token to the browser flow only with "
                    'access_type = "offline" (and prompt = "consent" if you consented '
                    'before); set preset = "google", or authorization_params = '
                    '{ access_type = "offline", prompt = "consent" }',
                )
            )
    if preset is PRESETS["microsoft"] and "offline_access" not in account.scopes:
        found.append(
            (
                "scopes",
                'Microsoft issues a refresh token only for the "offline_access" scope; add it',
            )
        )
    return found
