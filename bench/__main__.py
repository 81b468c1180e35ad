"""`make bench`: measure the token fast path, refresh, the idle daemon, scale, and peer libraries.

Prints a table and writes it as JSON (default bench/results/bench.json) with the machine's
description. Each number is the median of repeated runs. The idle daemon runs with its periods
scaled down into a window of whole periods (bench/idle.py): 60 s, or 600 s with ``--long``,
which also adds the 1,000-account scale run; ``--smoke`` runs every part
with tiny counts, to check that the script works, not the numbers.

usage: python -m bench [--smoke | --long] [--runs N] [--cap N] [--no-peers] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path

from bench import cold, idle, peers, refresh, scale, session
from bench.common import REPO, machine, retried

IDLE_RSS_GOAL_MIB = 40.0
IDLE_PER_ACCOUNT_GOAL_KIB = 20.0
IDLE_WAKEUPS_GOAL = 12.0
IDLE_EVENTS_WAKEUPS_GOAL = 2.0  # issue 29: with NetworkManager (or networkd) and logind
PARTS = ("cold", "session", "refresh", "idle", "scale", "peers")


def measure_idle(window: float, many: int) -> dict[str, object]:
    """One account and ``many``, as installed (the unit's watchdog on), and one without it.

    Run in parallel; each over a window of whole scaled periods (see bench/idle.py).
    """
    watchdog = idle.unit_watchdog()
    cases = {
        "one": (1, watchdog),
        "many": (many, watchdog),
        "one_no_watchdog": (1, Fraction(0)),
    }
    with ThreadPoolExecutor(len(cases) + 1) as pool:
        futures = {
            name: pool.submit(idle.measure, accounts, watchdog=dog, target_window=window)
            for name, (accounts, dog) in cases.items()
        }
        # Issue 29: with NetworkManager and logind (fakes on a private system bus), no tick.
        futures["one_events"] = pool.submit(
            idle.measure, 1, watchdog=watchdog, target_window=window, events=True
        )
        results = {name: future.result() for name, future in futures.items()}
    one, other, bare = results["one"], results["many"], results["one_no_watchdog"]
    rss_one = float(str(one["rss_mib"]))
    per_account = (float(str(other["rss_mib"])) - rss_one) * 1024 / max(1, many - 1)
    wakeups = float(str(one["wakeups_per_hour"]))
    with_events = float(str(results["one_events"]["wakeups_per_hour"]))
    return {
        **results,
        "unit_watchdog_sec": float(watchdog),
        "rss_per_extra_account_kib": round(per_account, 1),
        "watchdog_adds_wakeups_per_hour": round(wakeups - float(str(bare["wakeups_per_hour"])), 1),
        "goals": {
            "rss_one_mib_max": IDLE_RSS_GOAL_MIB,
            "rss_per_extra_account_kib_max": IDLE_PER_ACCOUNT_GOAL_KIB,
            "wakeups_per_hour_max": IDLE_WAKEUPS_GOAL,
            "met_rss": rss_one <= IDLE_RSS_GOAL_MIB,
            "met_per_account": per_account <= IDLE_PER_ACCOUNT_GOAL_KIB,
            "met_wakeups": wakeups <= IDLE_WAKEUPS_GOAL,
            "wakeups_with_events_per_hour_max": IDLE_EVENTS_WAKEUPS_GOAL,
            "met_wakeups_with_events": with_events <= IDLE_EVENTS_WAKEUPS_GOAL,
        },
    }


def table(report: dict[str, object]) -> str:
    """The human-readable summary: each measure, its floor or goal, and whether it is met."""
    rows: list[tuple[str, str, str, str]] = []
    c = report["cold_start"]
    if isinstance(c, dict) and "skipped" not in c:
        ms, goals = c["median_ms"], c["goals"]
        floors = f"{ms['python_pass']} / {ms['secret_tool_lookup']} ms"
        ratio = f"{c['token_vs_secret_tool']}x"
        rows += [
            ("token cold start (median)", f"{ms['token']} ms", "<= 100 ms", yes(goals["met_ms"])),
            ("  python -c pass / secret-tool lookup", floors, "floors", ""),
            ("  token / secret-tool lookup", ratio, "<= 2.5x", yes(goals["met_ratio"])),
            ("  python reading the same item, alone", f"{ms['python_read_item']} ms", "floor", ""),
            (
                "  python asking a Unix socket (a daemon-answered token's floor)",
                f"{ms['python_ask_socket']} ms ({c['ask_socket_vs_secret_tool']}x)",
                "floor",
                "",
            ),
            ("  token peak RSS", f"{c['max_rss_mib']['token']} MiB", "", ""),
            ("token cold start, file store (median)", f"{ms['token_file_store']} ms", "", ""),
            (
                "token cold start, daemon running (median)",
                f"{ms['token_daemon_running']} ms ({c['token_daemon_running_vs_secret_tool']}x)",
                "<= 2.5x",
                yes(
                    c["token_daemon_running_vs_secret_tool"]
                    <= c["goals"]["ratio_to_secret_tool_max"]
                )
                + ("" if c["daemon_answers_token"] else " (no socket)"),
            ),
        ]
    e = report.get("secret_session")
    if isinstance(e, dict) and "skipped" not in e:
        read, cold_ms = e["read_median_ms"], e["cold_process_median_ms"]
        extra = e["cold_process_extra_ms"]
        rows += [
            (
                "keyring read, plain / encrypted session",
                f"{read['plain']} / {read['encrypted']} ms (+{e['read_extra_ms']} ms)",
                "",
                "",
            ),
            (
                "  cold process reading it, plain / encrypted",
                f"{cold_ms['plain']} / {cold_ms['encrypted']} ms (+{extra} ms)",
                "",
                "",
            ),
        ]
    r = report["refresh"]
    if isinstance(r, dict) and "skipped" not in r:
        ms = r["median_ms"]
        with_python = f"{r['ratio_to_floor_plus_python_start']}x"
        rows += [
            ("refresh --force (median)", f"{ms['refresh_force']} ms", "", ""),
            ("refresh --force, file store", f"{ms['refresh_force_file_store']} ms", "", ""),
            ("  floor: curl POST + secret-tool store", f"{r['floor_ms']} ms", "", ""),
            ("  refresh / floor", f"{r['ratio_to_floor']}x", "<= 1.5x", yes(r["goals"]["met"])),
            ("  refresh / (floor + python start)", with_python, "", ""),
        ]
        v = report.get("refresh_vs_peers")
        if isinstance(v, dict):
            rows.append(
                (
                    f"  refresh / fastest peer, interleaved ({v['fastest']})",
                    f"{v['ours_ms']} / {v['fastest_ms']} ms = {v['ratio']}x",
                    "<= 1x",
                    yes(v["met"]),
                )
            )
        d = r["in_process"]
        rows += [
            ("daemon's own refresh (in process)", f"{d['median_ms']['daemon_refresh']} ms", "", ""),
            (
                "  floor: one POST + one keyring write",
                f"{d['median_ms']['http_post']} + {d['median_ms']['keyring_write']} ms",
                "",
                "",
            ),
            (
                "  daemon refresh / floor",
                f"{d['ratio_to_floor']}x",
                "<= 1.5x",
                yes(d["goals"]["met"]),
            ),
        ]
    i = report["idle"]
    if isinstance(i, dict) and "skipped" not in i:
        g, one, many, bare = i["goals"], i["one"], i["many"], i["one_no_watchdog"]
        per_account = f"{i['rss_per_extra_account_kib']} KiB"
        holds = one["window_holds"]
        how = (
            f"{one['switches']} switches in {one['window_s']:.0f} s = {holds['ticks']:.0f} ticks, "
            f"{holds['pings']:.0f} pings, {holds['checks']:.0f} check at scale {one['scale']}"
        )
        rows += [
            ("idle RSS, 1 account", f"{one['rss_mib']} MiB", "<= 40 MiB", yes(g["met_rss"])),
            (f"idle RSS, {many['accounts']} accounts", f"{many['rss_mib']} MiB", "", ""),
            ("  per extra account", per_account, "<= 20 KiB", yes(g["met_per_account"])),
            (
                f"idle wake-ups/h, no event source (WatchdogSec={i['unit_watchdog_sec']:.0f}s)",
                str(one["wakeups_per_hour"]),
                "<= 12",
                yes(g["met_wakeups"]),
            ),
            ("  measured as", how, "", ""),
            (f"  {many['accounts']} accounts, as installed", str(many["wakeups_per_hour"]), "", ""),
            (
                "  without the watchdog",
                f"{bare['wakeups_per_hour']} (it adds {i['watchdog_adds_wakeups_per_hour']})",
                "",
                "",
            ),
            (
                "idle wake-ups/h with NetworkManager + logind (no tick)",
                str(i["one_events"]["wakeups_per_hour"]),
                f"<= {IDLE_EVENTS_WAKEUPS_GOAL}",
                yes(g["met_wakeups_with_events"]),
            ),
        ]
    s = report["scale"]
    if isinstance(s, list):
        for run in s:
            result = (
                f"READY {run['ready_s']} s, RSS {run['rss_ready_mib']} MiB, all refreshed "
                f"{run['refresh_all_s']} s ({run['refresh_per_account_ms']} ms each)"
            )
            rows.append(
                (
                    f"{run['accounts']} accounts, cap {run['max_concurrency']}",
                    result,
                    f"peak in flight {run['peak_in_flight']}",
                    yes(run["cap_respected"]),
                )
            )
    p = report["peers"]
    if isinstance(p, dict) and "skipped" not in p:
        for name in ("pytrakt", "trakt.py"):
            peer = p[name]
            rows.append(
                (
                    f"{name} {peer['version']} (JSON file)",
                    f"token {peer['token_median_ms']} ms, {peer['token_max_rss_mib']} MiB; "
                    f"refresh {peer['refresh_median_ms']} ms",
                    "",
                    "",
                )
            )
    widths = [max(len(row[k]) for row in rows) for k in range(4)]
    header = ("measure", "result", "goal / floor", "met")
    lines = [" | ".join(cell.ljust(width) for cell, width in zip(header, widths, strict=True))]
    lines.append("-|-".join("-" * width for width in widths))
    lines += [
        " | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    ]
    return "\n".join(lines)


def against_peers(peers: object) -> dict[str, object] | None:
    """`refresh --force` against the fastest peer's refresh, run interleaved (bench/peers.py)."""
    if not isinstance(peers, dict) or "refresh_side_by_side_ms" not in peers:
        return None
    times = dict(peers["refresh_side_by_side_ms"])
    ours = float(times.pop("ours"))
    fastest = min(times, key=times.__getitem__)
    ratio = round(ours / times[fastest], 2)
    return {
        "ours_ms": ours,
        "fastest": fastest,
        "fastest_ms": times[fastest],
        "ratio": ratio,
        "met": ratio <= 1.0,
    }


def yes(value: object) -> str:
    return "yes" if value else "NO"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--smoke", action="store_true", help="tiny counts: check the script works")
    mode.add_argument("--long", action="store_true", help="600 s idle windows, 1,000 accounts")
    parser.add_argument("--runs", type=int, help="repeats per timing (default 21; smoke 2)")
    parser.add_argument("--cap", type=int, default=4, help="[daemon] max_concurrency for scale")
    parser.add_argument("--no-peers", action="store_true", help="skip pytrakt and trakt.py")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "bench.json")
    parser.add_argument(
        "--only", choices=PARTS, action="append", help="run only this part (repeatable)"
    )
    parser.add_argument("--sizes", help="scale: account counts, comma-separated (e.g. 100,1000)")
    args = parser.parse_args()
    os.umask(0o077)
    runs = args.runs or (2 if args.smoke else 21)
    if args.smoke:
        idle_window, many, sizes = 3.0, 3, [3]
    elif args.long:
        idle_window, many, sizes = 600.0, 100, [10, 100, 1000]
    else:
        idle_window, many, sizes = 60.0, 100, [10, 100]
    if args.sizes:
        sizes = [int(size) for size in args.sizes.split(",")]
    parts = set(args.only or PARTS) - ({"peers"} if args.no_peers else set())
    began = time.monotonic()
    report: dict[str, object] = {"format_version": 1, "machine": machine()}
    report["mode"] = "smoke" if args.smoke else "long" if args.long else "default"
    skipped = {"skipped": "not asked for"}
    report["cold_start"] = retried(cold.measure, runs) if "cold" in parts else skipped
    report["secret_session"] = retried(session.measure, runs) if "session" in parts else skipped
    report["refresh"] = retried(refresh.measure, runs) if "refresh" in parts else skipped
    report["idle"] = retried(measure_idle, idle_window, many) if "idle" in parts else skipped
    report["scale"] = (
        [retried(scale.measure, size, args.cap) for size in sizes] if "scale" in parts else []
    )
    if "peers" in parts:
        report["peers"] = retried(peers.measure, runs)
    else:
        report["peers"] = {"skipped": "--no-peers" if args.no_peers else "not asked for"}
    report["refresh_vs_peers"] = against_peers(report["peers"])
    report["elapsed_s"] = round(time.monotonic() - began, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(table(report))
    print(f"\nmachine: {json.dumps(report['machine'])}\nwritten: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
