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
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import rss_kib, start_daemon, switches, token_document
from tests.support.harness import CLIENT_ID, CLIENT_SECRET
from tests.support.keyring_session import KeyringSession
from trakt_emulator import Emulator
from tvmaniac_refreshd.config import load_config

REPO = Path(__file__).resolve().parents[1]


def seed_accounts(
    root: Path, env: dict[str, str], emulator: Emulator, count: int, tick: str
) -> Path:
    config = root / "config.toml"
    tables = "".join(
        f'[accounts.a{i}]\nprovider = "trakt"\nclient_id = "{CLIENT_ID}"\n'
        f'client_secret = "{CLIENT_SECRET}"\nauth_url = "{emulator.url}"\n'
        for i in range(count)
    )
    config.write_text("[alerts]\ndesktop = false\n" + tables)
    config.chmod(0o600)
    accounts = load_config(config).accounts
    items = {}
    for name, account in accounts.items():
        grant = emulator.seed_grant(name)
        items[name] = token_document(name, grant, account.fingerprint(), age=0)
    script = (
        "import json, sys\nfrom keyring.backends import SecretService\n"
        "kr = SecretService.Keyring()\n"
        "for name, text in json.load(sys.stdin).items():\n"
        "    kr.set_password('tvmaniac-refreshd', name, text)\n"
    )
    subprocess.run(
        [sys.executable, "-c", script], input=json.dumps(items), text=True, env=env, check=True
    )
    return config


def measure(seconds: float, accounts: int, watchdog_sec: int, tick: str) -> dict[str, object]:
    with (
        tempfile.TemporaryDirectory() as directory,
        KeyringSession() as keyring,
        Emulator(client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as emulator,
    ):
        root = Path(directory)
        env = dict(keyring.env)
        env.update({"PYTHONPATH": str(REPO), "XDG_STATE_HOME": str(root / "state")})
        env["TVMANIAC_REFRESHD_CONFIG"] = str(seed_accounts(root, env, emulator, accounts, tick))
        if watchdog_sec:
            env["WATCHDOG_USEC"] = str(watchdog_sec * 1_000_000)
        daemon, notify, ready_s = start_daemon(env, root, timeout=120)
        first = switches(daemon.pid)
        time.sleep(seconds)  # the measurement itself: an idle period
        last = switches(daemon.pid)
        rss = rss_kib(daemon.pid)
        threads = len(list(Path(f"/proc/{daemon.pid}/task").iterdir()))
        daemon.send_signal(signal.SIGTERM)
        daemon.communicate(timeout=30)
        notify.close()
        requests = emulator.counters()["requests"]
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
