"""What `login` decides before it asks the provider for anything: whose login it would replace,
and which of the options given it would ignore."""

from __future__ import annotations

import os
from pathlib import Path

from tvmaniac_refreshd.config.binding import mismatch, way_out
from tvmaniac_refreshd.config.settings import Account
from tvmaniac_refreshd.core.errors import LoginElsewhere, StateUnwritable, StoreCorrupt
from tvmaniac_refreshd.core.tokens import TokenDocument
from tvmaniac_refreshd.storage.store import TokenStore


def login_to_replace(store: TokenStore, account: Account, *, replace: bool) -> TokenDocument | None:
    """Return the stored login a new one would replace (None if none, or a damaged one).

    Raises:
        StoreCorrupt: a damaged or foreign item, without ``replace``.
        LoginElsewhere: a login made for another client or endpoint, without ``replace``: a
            try-out against another server must not silently end the real login.
    """
    try:
        previous = store.load(account.name)
    except StoreCorrupt as exc:
        if not replace:
            raise StoreCorrupt(f"{exc}; or run `login --replace` to overwrite it") from None
        return None
    elsewhere = None if previous is None else mismatch(account, previous)
    if elsewhere is not None and not replace:
        raise LoginElsewhere(
            f"{elsewhere}; it was left as it is. To log in with this config, {way_out(account)}",
            account=account.name,
        )
    return previous


def replace_warning(account: Account, previous: TokenDocument | None) -> str | None:
    """The warning shown before a login that, if it succeeds, replaces a stored one."""
    if previous is None:
        return None
    return (
        f"account {account.name!r} is already logged in; if this login succeeds, it replaces "
        "that one"
    )


def ignored_port(*, port: int | None, browser_login: bool) -> str | None:
    """The warning for `--port` on a device login, which listens on no port."""
    if port is None or browser_login:
        return None
    return "--port is used only by a browser login (--browser); this is a device-code login"


def state_writable(directory: Path) -> None:
    """Refuse to start a login whose state could not be recorded (a read-only home): the
    provider would approve it and nothing could be stored.

    Raises:
        StateUnwritable: the directory cannot be written (access(2) sees a read-only mount).
    """
    if not os.access(directory, os.W_OK | os.X_OK):
        raise StateUnwritable(
            f"cannot write the state directory {directory}, so a login could not be stored; "
            "make it writable (a read-only home or mount?), then run login again"
        )
