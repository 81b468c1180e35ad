"""`service uninstall`: stop and remove the OS service; fine if it is not installed."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from tvmaniac_refreshd.cli.app import App
from tvmaniac_refreshd.cli.grammar import Verb
from tvmaniac_refreshd.core.errors import EXIT_OK
from tvmaniac_refreshd.core.locations import APP
from tvmaniac_refreshd.storage.layout import state_directory


@dataclass(frozen=True)
class ServiceUninstallOptions:
    dry_run: bool = False


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dry-run", action="store_true", help="print what would be removed; change nothing"
    )


def run(app: App, options: ServiceUninstallOptions) -> int:
    app.service_manager().uninstall(dry_run=options.dry_run, out=app.out)
    if not options.dry_run:
        app.out.write(
            f"Kept on purpose: the config ({app.config_location}), the state "
            f"({state_directory(app.environ)}) and the tokens; `{APP} logout` removes an account's "
            "tokens and state.\n"
        )
    return EXIT_OK


VERB = Verb(
    "service uninstall",
    "stop and remove the service; fine if it is not installed",
    ServiceUninstallOptions,
    run,
    arguments,
)
