"""Measure the idle daemon: RSS and wake-ups per hour over an idle period.

Wake-ups are the voluntary context switches of all the daemon's threads
(/proc/PID/task/*/status), counted from READY until the end of the period; the daemon runs
against the local Trakt emulator and a private gnome-keyring, with 7-day tokens, so nothing is
due during the measurement.

usage: python -m bench.idle [--seconds 600] [--accounts 1] [--watchdog-sec 0]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

from bench.common import rig, rss_kib, start_daemon, switches


def measure(seconds: float, accounts: int, watchdog_sec: int, tick: str) -> dict[str, object]:
    with rig(accounts, f'[daemon]\ntick = "{tick}"\n') as r:
        r.seed()
        env = dict(r.env)
        if watchdog_sec:
            env["WATCHDOG_USEC"] = str(watchdog_sec * 1_000_000)
        daemon, notify, ready_s = start_daemon(env, r.root, timeout=120)
        first = switches(daemon.pid)
        time.sleep(seconds)  # the measurement itself: an idle period
        last = switches(daemon.pid)
        rss = rss_kib(daemon.pid)
        threads = len(list(Path(f"/proc/{daemon.pid}/task").iterdir()))
        daemon.send_signal(signal.SIGTERM)
        daemon.communicate(timeout=30)
        notify.close()
        requests = r.emulator.counters()["requests"]
    return {
        "accounts": accounts,
        "idle_seconds": seconds,
        "watchdog_sec": watchdog_sec,
        "tick": tick,
        "ready_seconds": round(ready_s, 2),
        "wakeups_per_hour": round((last - first) * 3600 / seconds, 1),
        "rss_mib": round(rss / 1024, 1),
        "threads": threads,
        "requests_while_idle": requests,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--accounts", type=int, default=1)
    parser.add_argument("--watchdog-sec", type=int, default=0)
    parser.add_argument("--tick", default="15m", help="the daemon's [daemon] tick")
    args = parser.parse_args()
    os.umask(0o077)
    print(json.dumps(measure(args.seconds, args.accounts, args.watchdog_sec, args.tick)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
