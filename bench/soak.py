"""Soak: the daemon with very short-lived tokens through a real keyring, watched for leaks.

Five-second tokens make the daemon refresh about every 2.5 s (the margin is capped to half the
lifetime), so 15 minutes give several hundred refreshes. The run passes when no refresh failed
and RSS and open file descriptors stay flat (start, end and peak are reported).

usage: python -m bench.soak [--seconds 900] [--lifetime 5]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time

from bench.common import rig, rss_kib, start_daemon

SAMPLE_EVERY = 5.0


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def soak(seconds: float, lifetime: int, warmup: float) -> dict[str, object]:
    """Run the daemon for ``seconds`` with ``lifetime``-second tokens and report."""
    with rig(1, '[retry]\ninitial = "1s"\nmaximum = "2s"\n') as r:
        r.seed()
        env, root, emulator = r.env, r.root, r.emulator
        emulator.set_ttl(lifetime)
        # One forced refresh swaps the seeded 7-day token for a short-lived one.
        subprocess.run(
            [sys.executable, "-m", "tvmaniac_refreshd", "refresh", "--force"],
            env=env,
            check=True,
            capture_output=True,
        )
        # A file, not a pipe: fifteen minutes of log lines would fill a pipe nobody reads.
        log = (root / "daemon.log").open("w+")
        daemon, notify, _ = start_daemon(env, root, timeout=60, stderr=log.fileno())
        notify.setblocking(False)
        samples = []
        started = time.monotonic()
        deadline = started + seconds
        while time.monotonic() < deadline:
            # The first refreshes import httpx and friends: growth then is not a leak.
            if time.monotonic() - started >= warmup:
                samples.append((rss_kib(daemon.pid), open_fds(daemon.pid)))
            time.sleep(SAMPLE_EVERY)  # the soak's own pace: a sample every few seconds
            while True:  # keep the notify socket drained, as systemd would
                try:
                    notify.recv(4096)
                except BlockingIOError:
                    break
        samples.append((rss_kib(daemon.pid), open_fds(daemon.pid)))
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=30)
        log.seek(0)
        err = log.read()
        log.close()
        notify.close()
        counters = emulator.counters()
    problems = [line for line in err.splitlines() if line.startswith(("<3>", "<4>", "<2>"))]
    rss = [sample[0] for sample in samples]
    fds = [sample[1] for sample in samples]
    return {
        "seconds": seconds,
        "token_lifetime": lifetime,
        "refreshes": counters["refresh_success"],
        "invalid_grant": counters["invalid_grant"],
        "warnings_and_errors": len(problems),
        "first_problem": problems[0] if problems else None,
        "warmup_seconds": warmup,
        "rss_mib": {
            "start": round(rss[0] / 1024, 1),
            "end": round(rss[-1] / 1024, 1),
            "peak": round(max(rss) / 1024, 1),
        },
        "open_fds": {"start": fds[0], "end": fds[-1], "peak": max(fds)},
        "exit_code": daemon.returncode,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=900)
    parser.add_argument("--lifetime", type=int, default=5)
    parser.add_argument("--warmup", type=float, default=30, help="seconds before sampling")
    args = parser.parse_args()
    os.umask(0o077)
    report = soak(args.seconds, args.lifetime, args.warmup)
    print(json.dumps(report, indent=2))
    failed = report["warnings_and_errors"] or report["invalid_grant"] or report["exit_code"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
