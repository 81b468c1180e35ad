"""`service install`: install and start the OS service; running it again updates it."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tvmaniac_refreshd.cli.app import App
from tvmaniac_refreshd.cli.grammar import Verb
from tvmaniac_refreshd.core.errors import EXIT_OK, ServiceUnavailable
from tvmaniac_refreshd.service.base import ServiceManager

if TYPE_CHECKING:  # the service modules load only when the verb runs
    from tvmaniac_refreshd.service.base import ServiceMode


@dataclass(frozen=True)
class ServiceInstallOptions:
    mode: ServiceMode = "daemon"
    dry_run: bool = False


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--mode",
        choices=("daemon", "timer"),
        default="daemon",
        help="daemon (default) or an hourly timer; switching replaces the other mode",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="print the files and commands; change nothing"
    )


def run(app: App, options: ServiceInstallOptions) -> int:
    from tvmaniac_refreshd.service.base import exec_argv  # noqa: PLC0415

    config = app.common.config or app.environ.get("TVMANIAC_REFRESHD_CONFIG")
    if not options.dry_run:
        app.config  # noqa: B018  # refuse to install a service that would fail on its config
    manager = app.service_manager()
    if options.dry_run:
        _warn_if_it_cannot_work(app, manager)
    manager.install(options.mode, exec_argv(config), dry_run=options.dry_run, out=app.out)
    return EXIT_OK


def _warn_if_it_cannot_work(app: App, manager: ServiceManager) -> None:
    """A dry run shows the files; it must not look as if the real install could work here."""
    try:
        manager.probe()
    except ServiceUnavailable as exc:
        app.warn(f"a real install cannot work here: {exc}")


VERB = Verb(
    "service install",
    "install and start the service; running it again updates it (idempotent)",
    ServiceInstallOptions,
    run,
    arguments,
)
