"""`job run NAME`: run a configured job now, in the foreground, by the rules the daemon uses."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from tvmaniac_refreshd.cli.app import App
from tvmaniac_refreshd.cli.grammar import Verb, duration_arg
from tvmaniac_refreshd.core.durations import format_duration


@dataclass(frozen=True)
class JobRunOptions:
    name: str = ""
    wait_for_network: int | None = None


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME", help="the job: a [jobs.NAME] of the config")
    parser.add_argument(
        "--wait-for-network",
        type=duration_arg,
        metavar="DURATION",
        help='a network = "connected" job on an offline machine waits this long for the '
        "network first (the timer's unit: 2m); still offline: exit 75, not run",
    )


def run(app: App, options: JobRunOptions) -> int:
    # Here, not at the top: every command builds the parser from this module (4 ms saved).
    from tvmaniac_refreshd.runtime.jobs import find_job, one_shot_engine, plan_retry  # noqa: PLC0415

    job = find_job(app, options.name)
    account = app.config.select(job.account)
    wait = options.wait_for_network or 0
    with one_shot_engine(app, job, wait_for_network=wait) as engine:
        outcome = engine.run(job, account)
    retry = plan_retry(app, job, outcome)
    again = f"; retry in {format_duration(retry)}" if retry is not None else ""
    app.out.write(f"{job.name}: {outcome.result} (exit {outcome.code}){again}\n")
    return outcome.code


VERB = Verb(
    "job run",
    "Run a job now, in the foreground, with a fresh token.",
    JobRunOptions,
    run,
    arguments,
    "Makes sure the account's token stays valid for the job's min_valid (and that no refresh\n"
    "falls due before its timeout), runs its command with the token in $env (never in an\n"
    "argv), logs its output with JOB=NAME and kills its process group at the timeout.\n"
    "The exit code: 0 done; 75 the job asked to be retried (or no token could be had for\n"
    "now), or it waits for the network; 77 a login is needed (the account's alerts fire);\n"
    "any other code is the job's own (1: timed out). What the systemd timer and the launchd\n"
    "agent of each job run. In its systemd oneshot, a run to retry (75, or offline) arms a\n"
    "transient timer for the retry, after the account's [retry] backoff with jitter.",
)
