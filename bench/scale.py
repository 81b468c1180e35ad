"""Many accounts in one daemon: time to READY, RSS, and refreshing all of them at once.

The daemon starts with N accounts whose tokens are not due and reports READY (sd_notify, on a
socket of ours). Then every item is replaced by a due one and the daemon is sent SIGHUP: it
re-plans, finds all N due, and refreshes them on its pool of ``[daemon] max_concurrency``
workers. The emulator answers each refresh after a fixed delay (a stand-in for the network) and
counts how many were in flight at once, which must never exceed the cap.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any

from bench.common import DUE_AGE, SERVICE, median, rig, rss_kib
from tests.support.keyring_session import applied

NETWORK_DELAY = 0.05  # seconds per refresh answered by the emulator, as a real round trip
DEADLINE = 900.0


class InFlight:
    """Wraps the emulator's app: counts concurrent token requests and delays each answer."""

    def __init__(self, app: Any, delay: float) -> None:  # noqa: ANN401
        self._handle = app.handle
        self._delay = delay
        self._lock = threading.Lock()
        self.now = 0
        self.peak = 0
        app.handle = self.handle

    def handle(self, method: str, path: str, headers: Any, body: bytes, query: str = "") -> Any:  # noqa: ANN401
        # ``query``: the emulator's handle takes the query string too (GET /oauth/authorize).
        if path != "/oauth/token":
            return self._handle(method, path, headers, body, query)
        with self._lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
        try:
            time.sleep(self._delay)
            return self._handle(method, path, headers, body, query)
        finally:
            with self._lock:
                self.now -= 1


def measure(accounts: int, cap: int) -> dict[str, object]:
    extra = f"[daemon]\nmax_concurrency = {cap}\n"
    with rig(accounts, extra) as r:
        began = time.monotonic()
        r.seed()
        seed_s = time.monotonic() - began
        flight = InFlight(r.emulator._app, NETWORK_DELAY)  # bench instrumentation
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(str(r.root / "notify.sock"))
        notify.settimeout(DEADLINE)
        env = dict(r.env, NOTIFY_SOCKET=str(r.root / "notify.sock"))
        started = time.monotonic()
        daemon = subprocess.Popen(
            [sys.executable, "-m", "tvmaniac_refreshd", "run"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            while not notify.recv(65536).startswith(b"READY=1"):
                pass
            ready_s = time.monotonic() - started
            time.sleep(1)  # let the planning settle before sampling memory
            rss_ready = rss_kib(daemon.pid)
            before = r.emulator.counters().get("refresh_success", 0)
            r.seed(age=DUE_AGE)
            sent = time.monotonic()
            daemon.send_signal(signal.SIGHUP)
            while r.emulator.counters().get("refresh_success", 0) - before < accounts:
                if time.monotonic() - sent > DEADLINE or daemon.poll() is not None:
                    raise RuntimeError("the daemon did not refresh every account in time")
                time.sleep(0.05)
            refresh_s = time.monotonic() - sent
            rss_after = rss_kib(daemon.pid)
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(60)
            notify.close()
        keyring_ms = keyring_calls(r.env, r.names)
    return {
        "accounts": accounts,
        "max_concurrency": cap,
        "network_delay_ms": NETWORK_DELAY * 1000,
        "seed_keyring_s": round(seed_s, 2),
        "ready_s": round(ready_s, 2),
        "rss_ready_mib": round(rss_ready / 1024, 1),
        "refresh_all_s": round(refresh_s, 2),
        "refresh_per_account_ms": round(refresh_s * 1000 / accounts, 1),
        "rss_after_refresh_mib": round(rss_after / 1024, 1),
        "peak_in_flight": flight.peak,
        "cap_respected": flight.peak <= cap,
        "keyring_call_ms": keyring_ms,
    }


def keyring_calls(env: dict[str, str], names: list[str], runs: int = 15) -> dict[str, float]:
    """One item read and one item write (the direct D-Bus calls), with this many items stored.

    Says which keyring call grows with the collection: gnome-keyring finds an item by its
    attributes quickly, but stores every change by rewriting its whole collection file.
    """
    from tvmaniac_refreshd.storage.secret_service import read_item, write_item  # noqa: PLC0415

    reads, writes = [], []
    with applied(env):
        for index in range(runs):
            name = names[index % len(names)]
            began = time.perf_counter()
            text = read_item(SERVICE, name) or ""
            reads.append(time.perf_counter() - began)
            began = time.perf_counter()
            write_item(SERVICE, name, text)  # the same text: the pair stays valid
            writes.append(time.perf_counter() - began)
    return {"read": round(median(reads) * 1000, 2), "write": round(median(writes) * 1000, 2)}
