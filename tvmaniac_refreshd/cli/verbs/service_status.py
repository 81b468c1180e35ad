"""`service status`: is the service installed, in which mode, and what its manager says."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass

from tvmaniac_refreshd.cli.app import App
from tvmaniac_refreshd.cli.grammar import Verb
from tvmaniac_refreshd.cli.status import FORMAT_VERSION
from tvmaniac_refreshd.core.errors import EXIT_FAILURE, EXIT_OK, RefreshdError
from tvmaniac_refreshd.core.locations import APP


@dataclass(frozen=True)
class ServiceStatusOptions:
    json: bool = False


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", action="store_true", help="machine-readable output, also for errors"
    )


def run(app: App, options: ServiceStatusOptions) -> int:
    try:
        state = app.service_manager().state()
    except RefreshdError as exc:
        if not options.json:
            raise
        # Scripts parse stdout: the error goes inside the JSON, and the exit code still says it.
        failure = {"format_version": FORMAT_VERSION, "installed": None, "error": str(exc)}
        app.out.write(json.dumps(failure, indent=2) + "\n")
        return exc.exit_code
    # A failed service, or one that cannot start, is a failure for scripts too.
    code = EXIT_FAILURE if state.failed or state.problem else EXIT_OK
    if options.json:
        app.out.write(json.dumps({"format_version": FORMAT_VERSION, **state.as_dict()}, indent=2))
        app.out.write("\n")
        return code
    if not state.available:
        app.out.write(f"{state.manager}: not running as the service manager\n")
    elif state.mode is None:
        app.out.write(
            app.hint(f"{state.manager}: not installed (`{APP} service install` sets it up)\n")
        )
    else:
        app.out.write(f"{state.manager}: {state.mode} mode; {state.active}\n")
    if state.detail:
        app.out.write(f"  {state.detail}\n")
    if state.problem:
        app.out.write(f"  problem: {state.problem}\n")
    for path in state.files:
        app.out.write(f"  {path}\n")
    if state.lingering is False:
        app.out.write("  lingering is off: the user manager stops when you log out\n")
    for warning in state.warnings:
        app.out.write(f"  warning: {warning}\n")
    return code


VERB = Verb(
    "service status",
    "is it installed, in which mode, and what the service manager says",
    ServiceStatusOptions,
    run,
    arguments,
)
