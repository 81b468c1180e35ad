"""Where an account's client secret comes from: systemd credentials, the config, or the keyring.

Never from the command line: argv is visible to every user of the machine.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tvmaniac_refreshd.config.settings import Account
from tvmaniac_refreshd.core.logs import register_secret
from tvmaniac_refreshd.storage.layout import credentials_directory
from tvmaniac_refreshd.storage.store import TokenStore


@dataclass(frozen=True)
class ClientSecret:
    """A client secret and a description of where it was found."""

    value: str | None = field(repr=False)
    source: str


def credential_name(account: str) -> str:
    """Return the systemd credential name (``LoadCredential=NAME:...``) for ``account``."""
    return f"{account}.client_secret"


def resolve_client_secret(
    account: Account, environ: Mapping[str, str], store: TokenStore
) -> ClientSecret:
    """Return the client secret of ``account`` from the first source that has one.

    Order: ``$CREDENTIALS_DIRECTORY`` (the service manager's explicit grant), then the config
    file, then the token store (keyring or file). None when no source has one: Trakt no longer
    requires it everywhere.

    Raises:
        StoreUnavailable: if the keyring must be asked and cannot be used.
    """
    directory = credentials_directory(environ)
    if directory is not None:
        path = Path(directory, credential_name(account.name))
        try:
            value = path.read_text(encoding="utf-8").strip()
        except OSError:
            value = ""
        if value:
            register_secret(value, account=account.name, kind="client_secret")
            return ClientSecret(value, f"systemd credential {path}")
    if account.client_secret:
        register_secret(account.client_secret, account=account.name, kind="client_secret")
        return ClientSecret(account.client_secret, "the config file")
    value = store.load_client_secret(account.name) or ""
    if value:
        register_secret(value, account=account.name, kind="client_secret")
        where = "the keyring" if store.kind == "keyring" else "the file store"
        return ClientSecret(value, where)
    return ClientSecret(None, "nowhere (none configured)")
