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
    from tvmaniac_refreshd.storage.layout import config_elsewhere  # noqa: PLC0415

    config = (
        app.common.config
        or app.environ.get("TVMANIAC_REFRESHD_CONFIG")
        or config_elsewhere(app.environ)  # the unit has no XDG_CONFIG_HOME of ours
    )
    if not options.dry_run:
        app.config  # noqa: B018  # refuse to install a service that would fail on its config
    manager = app.service_manager()
    if options.dry_run:
        _warn_if_it_cannot_work(app, manager)
    manager.install(options.mode, exec_argv(config), dry_run=options.dry_run, out=app.out)
    _install_jobs(app, manager, options, exec_argv(config))
    return EXIT_OK


def _warn_if_it_cannot_work(app: App, manager: ServiceManager) -> None:
    """A dry run shows the files; it must not look as if the real install could work here."""
    try:
        manager.probe()
    except ServiceUnavailable as exc:
        app.warn(f"a real install cannot work here: {exc}")


def _install_jobs(
    app: App, manager: object, options: ServiceInstallOptions, argv: list[str]
) -> None:
    """Timer mode: a timer per [jobs.NAME]; daemon mode: none (the daemon runs them)."""
    from tvmaniac_refreshd.service.job_units import JobTimer  # noqa: PLC0415

    jobs = app.config.jobs.values() if options.mode == "timer" else ()
    timers = [
        JobTimer(
            job.name,
            job.every,
            job.at.hour if job.at else None,
            job.at.minute if job.at else None,
            job.timeout,
        )
        for job in jobs
    ]
    install_jobs = getattr(manager, "install_jobs", None)
    if install_jobs is not None:
        install_jobs(timers, argv, dry_run=options.dry_run, out=app.out)
    elif timers:
        app.warn(
            "this service manager gets no timer per job yet: in timer mode the jobs do not run "
            "by themselves; use daemon mode (it runs them), or `job run NAME` from cron"
        )


VERB = Verb(
    "service install",
    "install and start the service; running it again updates it (idempotent)",
    ServiceInstallOptions,
    run,
    arguments,
)
