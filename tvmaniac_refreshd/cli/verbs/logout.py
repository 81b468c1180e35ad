"""`logout`: revoke the token at the provider, then delete it from the store."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from tvmaniac_refreshd.cli.app import App
from tvmaniac_refreshd.cli.grammar import Verb
from tvmaniac_refreshd.cli.plaintext import delete_plaintext
from tvmaniac_refreshd.config.binding import mismatch
from tvmaniac_refreshd.core.errors import (
    EXIT_OK,
    LoginElsewhere,
    RefreshdError,
    StoreCorrupt,
    StoreUnavailable,
)
from tvmaniac_refreshd.core.logs import register_secret
from tvmaniac_refreshd.providers.factory import wording_for


@dataclass(frozen=True)
class LogoutOptions:
    local: bool = False  # delete from the store without sending anything anywhere


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--local",
        action="store_true",
        help="delete the tokens from the keyring without sending anything to any server "
        "(revoke the app by hand at the provider then)",
    )


def run(app: App, options: LogoutOptions) -> int:
    account = app.account()
    with app.lock(account):
        try:
            document = app.store.load(account.name)
        except StoreCorrupt:
            document = None
            app.warn("the stored item was unreadable; deleting it without revoking")
        if document is not None:
            register_secret(document.tokens.access_token)
            register_secret(document.tokens.refresh_token)
        if document is not None and options.local:
            app.warn(
                "deleting the tokens locally without revoking them; the grant stays valid at "
                "the provider until you revoke the app there"
            )
        elif document is not None and (elsewhere := mismatch(account, document)) is not None:
            # The token and the client credentials go only where the login was made.
            raise LoginElsewhere(
                f"{elsewhere}; nothing was sent and nothing deleted. Point the config back at "
                "it to revoke it, or run `tvmaniac-refreshd logout --local` to delete it "
                f"from {app.store.where(account.name)} only",
                account=account.name,
            )
        elif document is not None:
            try:
                app.client(account).revoke(document.tokens, now=app.clock())
            except RefreshdError as exc:
                if isinstance(exc, StoreUnavailable):
                    raise
                manage = wording_for(account).manage_apps
                app.warn(
                    f"could not revoke the token at the provider ({exc}); deleting it locally "
                    f"anyway. Revoke the app by hand in {manage} if needed"
                )
        existed = app.store.delete(account.name)
        app.states.delete(account.name)
        leftovers = delete_plaintext(app, account)
    app.tell_daemon()
    if leftovers:
        app.out.write(f"Deleted the unencrypted copies {', '.join(leftovers)}.\n")
        app.warn(
            "a refresh token in an unencrypted copy may still be valid at the provider; revoke "
            f"the app in {wording_for(account).manage_apps} if the copy may have been read"
        )
    if existed:
        app.out.write(
            f"Logged out: account {account.name!r} was removed from "
            f"{app.store.where(account.name)}.\n"
        )
    else:
        app.out.write(f"Account {account.name!r} was not logged in; nothing to do.\n")
    return EXIT_OK


VERB = Verb(
    "logout",
    "Revoke the token at the provider and delete it from the keyring.",
    LogoutOptions,
    run,
    arguments,
    "If the provider cannot be reached, the tokens are still deleted locally, a warning "
    "is printed, and the exit code is 0.\nIf the config now names another provider or "
    "client than the login was made with, nothing is sent anywhere and nothing is "
    "deleted unless --local is given.",
)
