"""`config accounts`: the configured account names, one per line (scripts, shell completion)."""

from __future__ import annotations

from tvmaniac_refreshd.cli.app import App
from tvmaniac_refreshd.cli.grammar import Verb
from tvmaniac_refreshd.cli.options import NoOptions
from tvmaniac_refreshd.core.errors import EXIT_OK


def run(app: App, _: NoOptions) -> int:
    app.out.write("".join(f"{name}\n" for name in app.config.accounts))
    return EXIT_OK


VERB = Verb(
    "config accounts",
    "print the configured account names, one per line (for scripts and shell completion)",
    NoOptions,
    run,
)
