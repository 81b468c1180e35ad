"""Measure the idle daemon: RSS, and wake-ups per hour with the unit exactly as installed.

Wake-ups are the voluntary context switches of all the daemon's threads
(/proc/PID/task/*/status), counted from READY over the window; the daemon runs against the local
Trakt emulator and a private gnome-keyring, with 7-day tokens, so nothing is due meanwhile.

An idle daemon wakes only for its periodic jobs: the tick (``[daemon] tick``, 15 min), the
re-check of every account (``check_interval``, 5 h) and the watchdog ping (half of the unit's
``WatchdogSec``, read from systemd/tvmaniac-refreshd.service, so whatever the unit says is what
is measured). A window of a few real minutes may or may not hold a tick, so its count says
nothing. Instead every period is scaled down by the same factor, so that the window holds a
whole number of each (by default 60 s: 20 ticks of 3 s, 40 pings, 1 re-check, for 5 hours as
installed), and the count is scaled back: per hour = switches x 3600 / (window / scale). The
phases scale too, so jobs that coincide as installed coincide here. A wake-up that did not
scale (a timer of a fixed length) would be counted 1/scale times too often: the figure is an
upper bound.

With ``--events`` (issue 29) the daemon runs with both event sources it looks for on Linux:
NetworkManager and logind, as the faithful fakes of tests/support/system_bus.py on a private
system bus. It then has no tick: only the re-check and the watchdog ping wake it. Without
``--events`` the sources are turned off (TVMANIAC_REFRESHD_EVENTS=off), which is the daemon as
it was, and as it is where no source exists.

usage: python -m bench.idle [--window 60] [--accounts 1] [--no-watchdog] [--events]
"""

from __future__ import annotations

import argparse
import configparser
import contextlib
import json
import math
import os
import re
import signal
import sys
import time
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

from bench.common import REPO, rig, rss_kib, start_daemon, switches
from tests.support.system_bus import private_system_bus
from tvmaniac_refreshd.config.settings import DaemonSettings
from tvmaniac_refreshd.daemon.events import EVENTS_ENV

UNIT = REPO / "systemd" / "tvmaniac-refreshd.service"
# systemd.time(7) time-span units, in seconds.
_SPAN_UNITS = {
    "us": Fraction(1, 1_000_000), "usec": Fraction(1, 1_000_000),
    "ms": Fraction(1, 1000), "msec": Fraction(1, 1000),
    "s": Fraction(1), "sec": Fraction(1), "second": Fraction(1), "seconds": Fraction(1),
    "m": Fraction(60), "min": Fraction(60), "minute": Fraction(60), "minutes": Fraction(60),
    "h": Fraction(3600), "hr": Fraction(3600), "hour": Fraction(3600), "hours": Fraction(3600),
    "d": Fraction(86400), "day": Fraction(86400), "days": Fraction(86400),
    "w": Fraction(604800), "week": Fraction(604800), "weeks": Fraction(604800),
}  # fmt: skip


def timespan(text: str) -> Fraction:
    """Seconds in a systemd time span (``15min``, ``1h 30min``, ``900``); 0 for off."""
    text = text.strip()
    if text in ("", "0", "infinity"):
        return Fraction(0)
    if re.fullmatch(r"\d+", text):
        return Fraction(int(text))
    parts = re.findall(r"(\d+)\s*([a-z]+)", text)
    if not parts or re.sub(r"(\d+)\s*([a-z]+)|\s", "", text):
        raise ValueError(f"not a systemd time span: {text!r}")
    return sum((int(number) * _SPAN_UNITS[unit] for number, unit in parts), Fraction(0))


def unit_watchdog(unit: Path = UNIT) -> Fraction:
    """The unit's ``WatchdogSec=`` in seconds (0: none), as installed."""
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read_string(unit.read_text())
    return timespan(parser.get("Service", "WatchdogSec", fallback="0"))


@dataclass(frozen=True)
class Rhythm:
    """The daemon's periodic jobs as installed (seconds), scaled into a window of whole periods."""

    tick: Fraction
    check: Fraction
    ping: Fraction  # 0: no watchdog
    window: Fraction  # seconds of the scaled run
    scale: Fraction  # scaled period / installed period

    @classmethod
    def fit(cls, watchdog: Fraction, target_window: float) -> Rhythm:
        defaults = DaemonSettings()
        tick, check = Fraction(defaults.tick), Fraction(defaults.check_interval)
        ping = watchdog / 2
        periods = [tick, check, *([ping] if ping else [])]
        common = _lcm(periods)  # as installed: every job's pattern repeats after this long
        # The config takes whole seconds, so tick and check must scale to whole seconds: the
        # window is a whole number of both per ``common``.
        step = math.lcm(int(common / tick), int(common / check))
        window = Fraction(step * max(1, math.ceil(target_window / step)))
        return cls(tick, check, ping, window, window / common)

    def scaled(self, period: Fraction) -> Fraction:
        return period * self.scale

    def per_hour(self, count: int) -> float:
        """``count`` wake-ups in the scaled window, as a rate in installed time."""
        return float(count * 3600 / (self.window / self.scale))


def _lcm(values: list[Fraction]) -> Fraction:
    denominator = math.lcm(*(value.denominator for value in values))
    return Fraction(math.lcm(*(int(value * denominator) for value in values)), denominator)


def measure(
    accounts: int, *, watchdog: Fraction, target_window: float, events: bool = False
) -> dict[str, object]:
    rhythm = Rhythm.fit(watchdog, target_window)
    tick, check = rhythm.scaled(rhythm.tick), rhythm.scaled(rhythm.check)
    extra = f'[daemon]\ntick = "{int(tick)}s"\ncheck_interval = "{int(check)}s"\n'
    with rig(accounts, extra) as r, contextlib.ExitStack() as stack:
        r.seed()
        env = dict(r.env)
        if events:
            bus = stack.enter_context(private_system_bus())
            bus.start("NetworkManager")
            bus.start("logind")
            env.update(bus.env)
        else:
            env[EVENTS_ENV] = "off"
        if rhythm.ping:
            env["WATCHDOG_USEC"] = str(int(rhythm.scaled(rhythm.ping) * 2 * 1_000_000))
        daemon, notify, ready_s = start_daemon(env, r.root, timeout=600)
        first = switches(daemon.pid)
        time.sleep(float(rhythm.window))  # the measurement itself: whole periods of idling
        last = switches(daemon.pid)
        rss = rss_kib(daemon.pid)
        threads = len(list(Path(f"/proc/{daemon.pid}/task").iterdir()))
        daemon.send_signal(signal.SIGTERM)
        daemon.communicate(timeout=30)
        notify.close()
        requests = r.emulator.counters()["requests"]
    window = rhythm.window
    return {
        "accounts": accounts,
        "events": "NetworkManager and logind (fakes)" if events else "off (the periodic tick)",
        "installed": {
            "tick_s": float(rhythm.tick),
            "check_interval_s": float(rhythm.check),
            "watchdog_sec": float(rhythm.ping * 2),
            "ping_every_s": float(rhythm.ping),
        },
        "scale": f"1/{1 / rhythm.scale}",
        "window_s": float(window),
        "window_holds": {
            "ticks": 0.0 if events else float(window / tick),
            "checks": float(window / check),
            "pings": float(window / rhythm.scaled(rhythm.ping)) if rhythm.ping else 0,
        },
        "ready_seconds": round(ready_s, 2),
        "switches": last - first,
        "wakeups_per_hour": round(rhythm.per_hour(last - first), 1),
        "rss_mib": round(rss / 1024, 1),
        "threads": threads,
        "requests_while_idle": requests,
        "rhythm": {key: str(value) for key, value in asdict(rhythm).items()},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--window", type=float, default=60, help="seconds of the scaled run")
    parser.add_argument("--accounts", type=int, default=1)
    parser.add_argument("--no-watchdog", action="store_true", help="as if WatchdogSec= were 0")
    parser.add_argument("--events", action="store_true", help="NetworkManager and logind fakes")
    args = parser.parse_args()
    os.umask(0o077)
    watchdog = Fraction(0) if args.no_watchdog else unit_watchdog()
    result = measure(
        args.accounts, watchdog=watchdog, target_window=args.window, events=args.events
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
