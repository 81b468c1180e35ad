"""`job list`: each configured job with its schedule, last result and next run."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass

from tvmaniac_refreshd.cli.app import App
from tvmaniac_refreshd.cli.grammar import Verb
from tvmaniac_refreshd.cli.job_report import job_reports, last_result
from tvmaniac_refreshd.cli.status import iso
from tvmaniac_refreshd.core.errors import EXIT_OK


@dataclass(frozen=True)
class JobListOptions:
    json: bool = False
    names: bool = False


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="one JSON object for scripts")
    parser.add_argument(
        "--names",
        action="store_true",
        help="only the job names, one per line (for scripts and shell completion)",
    )


def run(app: App, options: JobListOptions) -> int:
    if options.names:  # no record read: completion asks this at each TAB
        app.out.write("".join(f"{name}\n" for name in app.config.jobs))
        return EXIT_OK
    reports = job_reports(app)
    if options.json:
        app.out.write(json.dumps({"jobs": reports}, indent=2) + "\n")
        return EXIT_OK
    if not reports:
        app.out.write(f"no jobs in {app.config.source}; add a [jobs.NAME] table\n")
        return EXIT_OK
    for report in reports:
        app.out.write(f"{report['name']}: {report['schedule']}, account {report['account']}\n")
        app.out.write(f"  last result: {last_result(report)}\n")
        app.out.write(f"  next run:    {_when(report['next_run_at'], 'not planned')}\n")
    return EXIT_OK


def _when(value: object, otherwise: str) -> str:
    return iso(value) or otherwise if isinstance(value, int) else otherwise


VERB = Verb(
    "job list",
    "List the configured jobs: schedule, last result, next run.",
    JobListOptions,
    run,
    arguments,
)
