"""`config set-secret`: read the account's client secret from the terminal (or stdin)."""

from __future__ import annotations

import sys

from tvmaniac_refreshd.cli.app import App
from tvmaniac_refreshd.cli.grammar import Verb
from tvmaniac_refreshd.cli.options import NoOptions
from tvmaniac_refreshd.cli.prompts import ask
from tvmaniac_refreshd.core.errors import EXIT_OK, UsageError
from tvmaniac_refreshd.core.logs import register_secret


def run(app: App, _: NoOptions) -> int:
    account = app.account()
    if sys.stdin.isatty():
        secret = ask(f"Client secret for account {account.name!r}: ", err=app.err, secret=True)
    else:
        secret = sys.stdin.readline()
    secret = secret.strip()
    if not secret:
        raise UsageError("no client secret was given (type it, or pipe it on stdin)")
    register_secret(secret)
    app.store.save_client_secret(account.name, secret)
    where = "the keyring" if app.store.kind == "keyring" else "the file store"
    app.out.write(f"Stored the client secret of {account.name!r} in {where}.\n")
    return EXIT_OK


VERB = Verb(
    "config set-secret",
    "read the account's client secret from the terminal (or stdin) into the keyring",
    NoOptions,
    run,
)
