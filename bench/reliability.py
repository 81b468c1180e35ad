"""Longer reliability runs: crash rounds (kill -9 at random moments) and the 2-minute race.

The same experiments as tests/reliability/, with the counts chosen on the command line; the
round logic lives in tests/support/crash.py. Each experiment prints a table, and with --json
one JSON line per experiment.

usage: python -m bench.reliability [--kills 200] [--daemon-kills 40] [--workers 2]
                                   [--seed N] [--races] [--seconds 120] [--json PATH]
       --kills 0 --daemon-kills 0 --races: only the race
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from tests.support.crash import OUTCOMES, RaceReport, Tally, run_crash, run_races


def crash_table(tally: Tally) -> str:
    """Rounds per outcome and lost sessions per 1,000 kills, as a Markdown table."""
    summary = tally.summary()
    outcomes = tally.outcomes()
    kills = tally.kills
    rows = [
        f"### crash: {tally.mode} (seed {tally.seed}, {summary['seconds']} s)",
        "",
        "| outcome | kills | share |",
        "|---|---:|---:|",
    ]
    rows += [
        f"| {name} | {outcomes[name]} | {100 * outcomes[name] / kills:.1f} % |"
        for name in OUTCOMES
        if kills
    ]
    rows += [
        "",
        f"rounds {summary['rounds']}, kills {kills}, exited before the kill "
        f"{summary['exited_before_kill']}, kills after a token request reached the emulator "
        f"{summary['kills_after_a_token_request']}, median kill window 0-"
        f"{summary['median_kill_window_s']} s",
        f"lost sessions per 1,000 kills: {summary['lost_per_1000_kills']} "
        f"(all in the window: {outcomes['lost_other'] == 0})",
        f"invariant violations {summary['problems']}, leaks {summary['leaks']}, "
        f"stray temporary files {summary['stray_files']}",
    ]
    rows += [f"  - {problem}" for problem in tally.problems()]
    return "\n".join(rows)


def race_table(report: RaceReport) -> str:
    """The race counts, as a Markdown table."""
    s = report.summary()
    rows = [
        ("token processes run", s["token_processes"]),
        ("... that failed", s["token_failures"]),
        ("tokens printed", s["tokens_printed"]),
        ("... distinct", s["distinct_tokens_printed"]),
        ("... not valid when printed", s["invalid_when_printed"]),
        ("... never issued by the emulator", s["not_issued"]),
        ("`refresh --force` runs", s["refresh_processes"]),
        ("... that failed", s["refresh_failures"]),
        ("refreshes at the emulator", s["refreshes"]),
        ("... by `token`", s["refreshed_by_token"]),
        ("... by `refresh --force`", s["refreshed_by_refresh"]),
        ("... by the daemon", s["refreshed_by_daemon"]),
        ("refresh requests", s["refresh_requests"]),
        ("invalid_grant responses", s["invalid_grant"]),
        ("refresh tokens presented twice", s["double_spent"]),
        ("daemon exit code", s["daemon_code"]),
        ("leaks", s["leaks"]),
    ]
    return "\n".join(
        [f"### races ({s['seconds']} s)", "", "| what | count |", "|---|---:|"]
        + [f"| {what} | {count} |" for what, count in rows]
    )


def progress(tally: Tally) -> None:
    if len(tally.rounds) % 20 == 0:
        print(f"  {tally.mode}: {tally.kills} kills ...", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=200, help="kills of `refresh --force`")
    parser.add_argument("--daemon-kills", type=int, default=40, help="kills of `run`")
    parser.add_argument("--workers", type=int, default=2, help="parallel worlds")
    parser.add_argument("--seed", type=int, default=None, help="replay a run's randomness")
    parser.add_argument("--races", action="store_true", help="also run the race experiment")
    parser.add_argument("--seconds", type=float, default=120, help="length of the race")
    parser.add_argument("--json", type=Path, default=None, help="append JSON lines here")
    args = parser.parse_args(argv)

    summaries: list[dict[str, object]] = []
    failed = False
    began = time.monotonic()
    for mode, kills in (("refresh", args.kills), ("daemon", args.daemon_kills)):
        if kills > 0:
            tally = run_crash(
                kills=kills, mode=mode, workers=args.workers, seed=args.seed, progress=progress
            )
            print(crash_table(tally), end="\n\n", flush=True)
            summaries.append(tally.summary())
            failed |= bool(tally.problems() or tally.leaks or tally.outcomes()["lost_other"])
    if args.races:
        report = run_races(seconds=args.seconds)
        print(race_table(report), end="\n\n", flush=True)
        summaries.append(report.summary())
        failed |= bool(
            report.invalid_grant
            or report.double_spent
            or report.invalid_when_printed
            or report.not_issued
            or report.token_failures
            or report.refresh_failures
            or report.leaks
            or report.daemon_code != 0
        )
    print(f"total {time.monotonic() - began:.0f} s")
    if args.json is not None:
        with args.json.open("a", encoding="utf-8") as handle:
            for summary in summaries:
                handle.write(json.dumps(summary) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
