"""Whether a stored login belongs to the account as the config now describes it, and in words.

A login is bound to the provider, client and endpoints it was made with (``Account.fingerprint``).
When the config now points elsewhere the login must not be used, replaced or revoked without
the user knowing whose it is, so every verb that meets one names both sides the same way.
"""

from __future__ import annotations

import dataclasses

from tvmaniac_refreshd.config.settings import Account
from tvmaniac_refreshd.core.tokens import TokenDocument


def recorded(account: Account, document: TokenDocument) -> TokenDocument:
    """Return ``document`` (made for ``account``) with the client and endpoint it is bound to
    written out, so that a later config pointed elsewhere can say whose login it is."""
    return dataclasses.replace(document, client_id=account.client_id, endpoint=account.endpoint)


def belongs(account: Account, document: TokenDocument) -> bool:
    """Return whether ``document`` was made for ``account`` as the config now describes it."""
    return document.fingerprint == account.fingerprint()


def login_owner(document: TokenDocument) -> str:
    """Return who a stored login was made for: client and endpoint, as far as it records them."""
    if not document.client_id:
        return "another client or endpoint (a login this old does not record which)"
    return f"client {document.client_id!r} at {document.endpoint}"


def config_owner(account: Account) -> str:
    """Return the client and endpoint the config names for ``account``."""
    return f"client {account.client_id!r} at {account.endpoint}"


def mismatch(account: Account, document: TokenDocument) -> str | None:
    """Return the sentence that names a login bound elsewhere, or None if it belongs here."""
    if belongs(account, document):
        return None
    return (
        f"the stored login of {account.name!r} was made for {login_owner(document)}, "
        f"but the config names {config_owner(account)}"
    )


def way_out(account: Account) -> str:
    """What to do about a login bound elsewhere (the account name keeps both logins apart)."""
    return (
        "point the config back at it, give this config another account name, or run "
        f"`tvmaniac-refreshd --account {account.name} login --replace` to replace that login"
    )
