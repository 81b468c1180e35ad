"""`config init`: the starter config, and writing it without ever replacing a file."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tvmaniac_refreshd.config.presets import TENANT
from tvmaniac_refreshd.config.settings import ACCOUNT_NAME, parse_config
from tvmaniac_refreshd.core.errors import RefreshdError, UsageError
from tvmaniac_refreshd.core.locations import TRAKT_APPS

TEMPLATE = """\
# tvmaniac-refreshd configuration, written by `tvmaniac-refreshd config init`.
# Every key, with its default and why: `tvmaniac-refreshd config example`.

[accounts.{account}]
provider = "trakt"
client_id = {client_id}
# The client secret is best kept in the keyring: `tvmaniac-refreshd config set-secret`.
# client_secret = "..."
# auth_url = "https://auth.trakt.tv"    # OAuth host; http://127.0.0.1:PORT for the emulator
# api_url  = "https://api.trakt.tv"     # API host; the same emulator URL
"""
# config/presets.py fills in the rest; the mail recipes (docs/guide/consumers.md) say where to
# get the client.
PRESET_TEMPLATES = {
    "google": """\
# tvmaniac-refreshd configuration, written by `tvmaniac-refreshd config init --preset google`.
# Every key, with its default and why: `tvmaniac-refreshd config example`.

[accounts.{account}]
# Gmail: the browser login (Google refuses the mail scope in the device flow), asking for
# offline access so that Google issues a refresh token; scope https://mail.google.com/.
preset = "google"
client_id = {client_id}
# The "Desktop app" client's secret, which Google itself says is not a secret; keep it in the
# keyring anyway: `tvmaniac-refreshd config set-secret`.
# client_secret = "..."
""",
    "microsoft": """\
# tvmaniac-refreshd configuration, written by `tvmaniac-refreshd config init --preset microsoft`.
# Every key, with its default and why: `tvmaniac-refreshd config example`.

[accounts.{account}]
# Outlook / Microsoft 365: the device login, as a public client (no client secret), with the
# IMAP and SMTP scopes and offline_access.
preset = "microsoft"
tenant = {tenant}
client_id = {client_id}
""",
}
WHERE_TO_REGISTER = {
    None: TRAKT_APPS,
    "google": "console.cloud.google.com, APIs & Services, Credentials",
    "microsoft": "entra.microsoft.com, App registrations",
}


def starter_config(
    client_id: str,
    account: str = "default",
    preset: str | None = None,
    tenant: str = "common",
) -> str:
    """Return the text of a starter config for one account: Trakt, or a preset's provider.

    Raises:
        UsageError: if the client id, the account name or the tenant could not be used.
    """
    client_id = client_id.strip()
    if not client_id or any(ch in client_id for ch in "\r\n\0"):
        where = WHERE_TO_REGISTER.get(preset, "the app registration")
        raise UsageError(f"the client id must be one non-empty line ({where})")
    if not ACCOUNT_NAME.fullmatch(account):
        raise UsageError(f"account names use letters, digits, '_', '.' and '-', not {account!r}")
    if not TENANT.fullmatch(tenant):
        raise UsageError("--tenant takes a tenant id, a domain, common, organizations or consumers")
    template = PRESET_TEMPLATES[preset] if preset else TEMPLATE
    # A JSON string with ASCII escapes is also a TOML basic string.
    text = template.format(
        account=account, client_id=json.dumps(client_id), tenant=json.dumps(tenant)
    )
    parse_config(text)  # what we write must load; a bug here must not leave a broken file
    return text


def already_exists(path: Path) -> RefreshdError:
    """The error for a config that is already there: it is never replaced."""
    return RefreshdError(
        f"{path} already exists; it was left as it is. Check it with "
        "`tvmaniac-refreshd config check`, or move it away first"
    )


def write_new(path: Path, text: str) -> None:
    """Create ``path`` with ``text``, mode 0600 from the first byte; never replace a file.

    Raises:
        RefreshdError: if the file exists or cannot be created.
    """
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise already_exists(path) from None
    except OSError as exc:
        raise RefreshdError(f"cannot create {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        path.unlink(missing_ok=True)  # half a config would be worse than none
        raise RefreshdError(f"cannot write {path}: {exc.strerror}") from None
