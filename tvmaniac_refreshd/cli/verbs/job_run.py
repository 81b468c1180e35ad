"""`job run NAME`: run a configured job now, in the foreground, by the rules the daemon uses."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from tvmaniac_refreshd.cli.app import App
from tvmaniac_refreshd.cli.grammar import Verb
from tvmaniac_refreshd.runtime.jobs import find_job, one_shot_engine


@dataclass(frozen=True)
class JobRunOptions:
    name: str = ""


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME", help="the job: a [jobs.NAME] of the config")


def run(app: App, options: JobRunOptions) -> int:
    job = find_job(app, options.name)
    account = app.config.select(job.account)
    with one_shot_engine(app, job) as engine:
        outcome = engine.run(job, account)
    app.out.write(f"{job.name}: {outcome.result} (exit {outcome.code})\n")
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
    "agent of each job run.",
)
