"""Plain-text token files an encrypted file store left behind (``encrypt = "systemd-creds"``
turned on over an existing file store): `login` and `status` name them, `logout` deletes them."""

from __future__ import annotations

from tvmaniac_refreshd.cli.app import App
from tvmaniac_refreshd.config.settings import Account
from tvmaniac_refreshd.storage.file_store import FileStore, leftover_advice, plaintext_leftovers


def warn_plaintext(app: App, account: Account) -> list[str]:
    """Warn of the plain-text copies of ``account``; return their paths."""
    found = plaintext_leftovers(app.store, account.name)
    if found:
        app.warn(leftover_advice(account.name, found))
    return found


def delete_plaintext(app: App, account: Account) -> list[str]:
    """Delete the plain-text copies of ``account``; return the paths deleted."""
    store = app.store
    return store.delete_plaintext_leftovers(account.name) if isinstance(store, FileStore) else []
