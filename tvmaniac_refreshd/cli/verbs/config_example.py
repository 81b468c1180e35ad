"""`config example`: print the shipped example config, every key explained."""

from __future__ import annotations

from tvmaniac_refreshd.cli.app import App
from tvmaniac_refreshd.cli.grammar import Verb
from tvmaniac_refreshd.cli.options import NoOptions
from tvmaniac_refreshd.core.errors import EXIT_OK, RefreshdError


def run(app: App, _: NoOptions) -> int:
    from tvmaniac_refreshd.core.shipped import EXAMPLE_CONFIG, shipped_file  # noqa: PLC0415

    found = shipped_file(*EXAMPLE_CONFIG)
    if found is None:
        raise RefreshdError("the example config is missing from this installation; reinstall it")
    app.out.write(found.read_text(encoding="utf-8"))
    return EXIT_OK


VERB = Verb(
    "config example",
    "print the shipped example config, every key explained",
    NoOptions,
    run,
)
