"""`store migrate --to file|keyring`: move every account's tokens and client secret from the
other store, each under the account's lock, verified in the target before the source is deleted.

Interrupted at any point (a kill, a full disk, a locked keyring), the source still holds every
item that was not yet verified in the target; running the command again finishes the job.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from tvmaniac_refreshd.cli.app import App
from tvmaniac_refreshd.cli.grammar import Verb
from tvmaniac_refreshd.config.settings import StoreBackend
from tvmaniac_refreshd.core.errors import EXIT_OK, RefreshdError, StoreCorrupt
from tvmaniac_refreshd.core.locations import APP
from tvmaniac_refreshd.core.logs import redact_text, register_secret
from tvmaniac_refreshd.core.tokens import encode_document
from tvmaniac_refreshd.storage.store import TokenStore

BACKENDS: tuple[StoreBackend, ...] = ("file", "keyring")


@dataclass(frozen=True)
class StoreMigrateOptions:
    to: StoreBackend = "keyring"  # required on the command line


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--to", choices=BACKENDS, required=True, help="target store")


def move_account(account: str, source: TokenStore, target: TokenStore) -> list[str]:
    """Move the items of ``account`` from ``source`` to ``target``; return what was moved.

    The caller holds the account's lock, so no refresh can spend the refresh token meanwhile.

    Raises:
        StoreUnavailable, StoreCorrupt: a store failed; the source still holds the item.
    """
    moved = []
    document = source.load(account)
    if document is not None:
        register_secret(document.tokens.access_token)
        register_secret(document.tokens.refresh_token)
        target.save(document)
        copy = target.load(account)
        if copy is None or encode_document(copy) != encode_document(document):
            raise StoreCorrupt(
                f"the tokens of {account!r} read back differently from {target.where(account)}; "
                f"they are still in {source.where(account)}",
                account=account,
            )
        source.delete(account)
        moved.append("tokens")
    secret = source.load_client_secret(account)
    if secret is not None:
        register_secret(secret)
        target.save_client_secret(account, secret)
        if target.load_client_secret(account) != secret:
            raise StoreCorrupt(
                f"the client secret of {account!r} read back differently from the {target.kind} "
                f"store; it is still in the {source.kind} store",
                account=account,
            )
        source.delete_client_secret(account)
        moved.append("client secret")
    return moved


def run(app: App, options: StoreMigrateOptions) -> int:
    to = options.to
    source = app.make_store(BACKENDS[1 - BACKENDS.index(to)])
    target = app.make_store(to)
    codes = []
    for account in app.config.accounts.values():
        try:
            with app.lock(account):
                moved = move_account(account.name, source, target)
        except RefreshdError as exc:
            app.err.write(f"{APP}: {account.name}: {redact_text(str(exc))}\n")
            codes.append(exc.exit_code)
            continue
        what = " and ".join(moved) if moved else f"nothing in the {source.kind} store"
        app.out.write(f"{account.name}: moved {what} to the {target.kind} store\n")
    if codes:
        app.err.write(f"{APP}: some accounts were not moved; their items stay where they were\n")
        return max(codes)
    if app.config.store.backend != to:
        app.out.write(
            f'Now set [store] backend = "{to}" in {app.config.source} (and restart the service '
            "if it runs): until then the commands still read the old store.\n"
        )
    return EXIT_OK


VERB = Verb(
    "store migrate",
    "move every account's items to the given store",
    StoreMigrateOptions,
    run,
    arguments,
)
