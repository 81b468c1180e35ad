"""`store migrate --to file|keyring`: move every account's tokens and client secret from the
other store, each under the account's lock, verified in the target before the source is deleted.
`store migrate --encrypt`: the same from the plain files of the file store into its encrypted
ones (``[store] encrypt = "systemd-creds"``), in place.

Interrupted at any point (a kill, a full disk, a locked keyring), the source still holds every
item that was not yet verified in the target; running the command again finishes the job. Where
both stores hold an account's tokens and they differ, the newer pair is kept, and only with
``--force``: the older may be the spent one, or another live grant.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from tvmaniac_refreshd.cli.app import App
from tvmaniac_refreshd.cli.grammar import Verb
from tvmaniac_refreshd.cli.status import iso
from tvmaniac_refreshd.config.settings import StoreBackend
from tvmaniac_refreshd.core.errors import (
    EXIT_OK,
    RefreshdError,
    StoreConflict,
    StoreCorrupt,
    UsageError,
)
from tvmaniac_refreshd.core.locations import APP
from tvmaniac_refreshd.core.logs import redact_text, register_secret
from tvmaniac_refreshd.core.tokens import TokenDocument, encode_document
from tvmaniac_refreshd.storage.file_store import FileStore
from tvmaniac_refreshd.storage.store import TokenStore

BACKENDS: tuple[StoreBackend, ...] = ("file", "keyring")


@dataclass(frozen=True)
class StoreMigrateOptions:
    to: StoreBackend | None = None  # this, or --encrypt, on the command line
    encrypt: bool = False  # the file store's plain files into its encrypted ones, in place
    force: bool = False  # both stores hold an account: keep the newer pair, delete the other


def arguments(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--to", choices=BACKENDS, help="target store")
    where.add_argument(
        "--encrypt",
        action="store_true",
        help='encrypt the file store\'s plain files in place (encrypt = "systemd-creds")',
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="where both stores hold an account, keep the newer token pair, delete the other",
    )


def _age(document: TokenDocument) -> tuple[int, int]:
    """Order token pairs by when the provider issued them, then by when we stored them."""
    return document.tokens.created_at, document.obtained_at


def _issued(document: TokenDocument) -> str:
    return f"issued {iso(document.tokens.created_at)}"


def _move_tokens(
    account: str, source: TokenStore, target: TokenStore, *, force: bool
) -> str | None:
    """Move the token document; return "tokens", a sentence on which pair was kept where both
    stores held one, or None if the source has none."""
    document = source.load(account)
    if document is None:
        return None
    register_secret(document.tokens.access_token)
    register_secret(document.tokens.refresh_token)
    existing = target.load(account)
    if existing is not None and encode_document(existing) != encode_document(document):
        register_secret(existing.tokens.access_token)
        register_secret(existing.tokens.refresh_token)
        target_newer = _age(existing) >= _age(document)
        newer, older = (target, source) if target_newer else (source, target)
        if not force:
            raise StoreConflict(
                f"{account!r} has different tokens in {target.where(account)} "
                f"({_issued(existing)}) and {source.where(account)} ({_issued(document)}); "
                f"the pair in {newer.where(account)} is newer. Nothing was moved: "
                "`store migrate --force` keeps the newer pair and deletes the other",
                account=account,
            )
        if target_newer:
            source.delete(account)
            return (
                f"kept the newer tokens in {target.where(account)} ({_issued(existing)}) and "
                f"deleted the older ones from {older.where(account)}"
            )
    target.save(document)
    copy = target.load(account)
    if copy is None or encode_document(copy) != encode_document(document):
        raise StoreCorrupt(
            f"the tokens of {account!r} read back differently from {target.where(account)}; "
            f"they are still in {source.where(account)}",
            account=account,
        )
    source.delete(account)
    if existing is not None and encode_document(existing) != encode_document(document):
        return (
            f"kept the newer tokens from {source.where(account)} ({_issued(document)}) over "
            f"the older ones in {target.where(account)} ({_issued(existing)})"
        )
    return "tokens"


def _move_secret(account: str, source: TokenStore, target: TokenStore, *, force: bool) -> bool:
    """Move the client secret; return whether there was one."""
    secret = source.load_client_secret(account)
    if secret is None:
        return False
    register_secret(secret)
    existing = target.load_client_secret(account)
    if existing is not None:
        register_secret(existing)
    if existing not in (None, secret) and not force:
        raise StoreConflict(
            f"{account!r} has a different client secret in each store; nothing more was "
            "moved. `store migrate --force` replaces the target's with the source's",
            account=account,
        )
    target.save_client_secret(account, secret)
    if target.load_client_secret(account) != secret:
        raise StoreCorrupt(
            f"the client secret of {account!r} read back differently from the {target.kind} "
            f"store; it is still in the {source.kind} store",
            account=account,
        )
    source.delete_client_secret(account)
    return True


def move_account(
    account: str, source: TokenStore, target: TokenStore, *, force: bool = False
) -> list[str]:
    """Move the items of ``account`` from ``source`` to ``target``; return what was moved
    ("tokens", "client secret"), and which pair was kept where both stores held one.

    The caller holds the account's lock, so no refresh can spend the refresh token meanwhile.

    Raises:
        StoreUnavailable, StoreCorrupt: a store failed; the source still holds the item.
        StoreConflict: both hold different items and ``force`` is off; nothing was changed.
    """
    done = []
    tokens = _move_tokens(account, source, target, force=force)
    if tokens is not None:
        done.append(tokens)
    if _move_secret(account, source, target, force=force):
        done.append("client secret")
    return done


def _stores(app: App, options: StoreMigrateOptions) -> tuple[TokenStore, TokenStore]:
    """Return (source, target) for the options."""
    if not options.encrypt:
        to = options.to or "keyring"
        return app.make_store(BACKENDS[1 - BACKENDS.index(to)]), app.make_store(to)
    target = app.store
    if not isinstance(target, FileStore) or not target.encrypted:
        raise UsageError(
            "`store migrate --encrypt` encrypts the file store in place: set [store] backend = "
            f'"file" and encrypt = "systemd-creds" in {app.config.source} first'
        )
    return target.unencrypted(), target


def _done(done: list[str], source: TokenStore, target: TokenStore, *, encrypt: bool) -> str:
    moved = [item for item in done if item in ("tokens", "client secret")]
    kept = [item for item in done if item not in moved]
    if not moved:
        what = f"nothing to move in {'the plain files' if encrypt else f'the {source.kind} store'}"
    elif encrypt:
        what = f"encrypted {' and '.join(moved)} in place; the plain files are deleted"
    else:
        what = f"moved {' and '.join(moved)} to the {target.kind} store"
    return "; ".join([what, *kept])


def run(app: App, options: StoreMigrateOptions) -> int:
    source, target = _stores(app, options)
    codes = []
    for account in app.config.accounts.values():
        try:
            with app.lock(account):
                done = move_account(account.name, source, target, force=options.force)
        except RefreshdError as exc:
            app.err.write(f"{APP}: {account.name}: {redact_text(str(exc))}\n")
            codes.append(exc.exit_code)
            continue
        app.out.write(f"{account.name}: {_done(done, source, target, encrypt=options.encrypt)}\n")
    if codes:
        app.err.write(f"{APP}: some accounts were not moved; their items stay where they were\n")
        return max(codes)
    if not options.encrypt and app.config.store.backend != target.kind:
        app.out.write(
            f'Now set [store] backend = "{target.kind}" in {app.config.source} (and restart the '
            "service if it runs): until then the commands still read the old store.\n"
        )
    return EXIT_OK


VERB = Verb(
    "store migrate",
    "move every account's items to the given store, or encrypt the file store in place",
    StoreMigrateOptions,
    run,
    arguments,
)
