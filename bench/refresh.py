"""`refresh --force` end to end, and the daemon's own refresh, each against its floor.

The cold floor is done with C clients, in the same run and interleaved: ``curl`` posts the same
refresh request to the emulator (spending a grant of its own), and ``secret-tool store`` writes
an item of the same size. Our command also reads the item, takes the lock, verifies the write
and records the state file; the ratio says what all that and Python cost together. The same
command on the file store (``[store] backend = "file"``) is measured next to it.

The daemon refreshes in a process that has long been running: no interpreter start, no import,
an HTTP client already made. So its refresh (``Refresher.ensure_fresh`` for the token it planned
for, built as `run` builds it) is timed in this process, interleaved with its floor in the same
process: one POST of the same refresh request over an httpx client made the same way, plus one
keyring write of an item of the same size (the direct Secret Service write, write_item).
"""

from __future__ import annotations

import inspect
import io
import json
import sys
import time

from bench.cold import command, import_profile
from bench.common import SERVICE, WEEK, Rig, median, rig, run_measured
from tests.support.harness import CLIENT_ID, CLIENT_SECRET
from tests.support.keyring_session import applied

REFRESH_GOAL_RATIO = 1.5
IN_PROCESS_GOAL_RATIO = 1.5


def measure(runs: int) -> dict[str, object]:
    with rig() as r:
        r.seed()
        refresh_token = str(r.emulator.seed_grant("floor", expires_in=WEEK)["refresh_token"])
        item = r.keyring.lookup(SERVICE, "default") or ""
        ours = [*command(r), "refresh", "--force"]
        file_env = r.file_store_env()
        times: dict[str, list[float]] = {
            "refresh_force": [],
            "refresh_force_file_store": [],
            "curl_post": [],
            "secret_tool_store": [],
        }
        for round_ in range(runs + 1):
            seconds, _, _ = run_measured(ours, r.env)
            file_s, _, _ = run_measured(ours, file_env)
            body = json.dumps(
                {
                    "refresh_token": refresh_token,
                    "client_id": CLIENT_ID,
                    "client_secret": CLIENT_SECRET,
                    "redirect_uri": "urn:ietf:wg:oauth:2.0:oob",
                    "grant_type": "refresh_token",
                }
            )
            post = ["curl", "-sS", "--fail", "-H", "Content-Type: application/json",
                    "-d", body, f"{r.emulator.url}/oauth/token"]  # fmt: skip
            curl_s, _, answer = run_measured(post, r.env)
            refresh_token = json.loads(answer)["refresh_token"]
            store = ["secret-tool", "store", "--label=bench floor", "service", "bench-floor",
                     "username", "floor"]  # fmt: skip
            store_s = timed_store(store, r.env, item)
            if round_:
                times["refresh_force"].append(seconds)
                times["refresh_force_file_store"].append(file_s)
                times["curl_post"].append(curl_s)
                times["secret_tool_store"].append(store_s)
        python_s = median(
            [run_measured([sys.executable, "-c", "pass"], r.env)[0] for _ in range(runs)]
        )
        profile = import_profile(r, "refresh", "--force")
        in_process = measure_in_process(r, runs)
    ms = {name: round(median(values) * 1000, 1) for name, values in times.items()}
    floor = round(ms["curl_post"] + ms["secret_tool_store"], 1)
    ratio = round(ms["refresh_force"] / floor, 2)
    return {
        "runs": runs,
        "median_ms": ms,
        "floor_ms": floor,
        "ratio_to_floor": ratio,
        "floor_plus_python_start_ms": round(floor + python_s * 1000, 1),
        "ratio_to_floor_plus_python_start": round(
            ms["refresh_force"] / (floor + python_s * 1000), 2
        ),
        "goals": {"ratio_to_floor_max": REFRESH_GOAL_RATIO, "met": ratio <= REFRESH_GOAL_RATIO},
        "import_profile": profile,
        "in_process": in_process,
    }


def refresh_body(refresh_token: str) -> dict[str, str]:
    return {
        "refresh_token": refresh_token,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "redirect_uri": "urn:ietf:wg:oauth:2.0:oob",
        "grant_type": "refresh_token",
    }


def measure_in_process(r: Rig, runs: int) -> dict[str, object]:
    """The daemon's refresh and its floor, both timed in this process (see the docstring)."""
    from tvmaniac_refreshd.core.logs import configure_logging  # noqa: PLC0415
    from tvmaniac_refreshd.providers.http import make_http_client  # noqa: PLC0415
    from tvmaniac_refreshd.runtime.root import Runtime  # noqa: PLC0415
    from tvmaniac_refreshd.storage.secret_service import write_item  # noqa: PLC0415
    from tvmaniac_refreshd.storage.state import token_digest  # noqa: PLC0415

    refresh_token = str(r.emulator.seed_grant("in-process floor", expires_in=WEEK)["refresh_token"])
    item = r.keyring.lookup(SERVICE, "default") or ""
    times: dict[str, list[float]] = {"daemon_refresh": [], "http_post": [], "keyring_write": []}
    with applied(r.env):
        # As `run` sets itself up: the daemon's log format and wiring.
        configure_logging(daemon=True, stream=io.StringIO(), environ={})
        app = Runtime(environ=r.env, err=io.StringIO())
        refresher = app.refresher(app.config.accounts["default"])
        http = make_http_client(app.config.http)
        url = f"{r.emulator.url}/oauth/token"
        try:
            # As the daemon calls it: for the token it planned for (a version without
            # ``planned`` reads the item before the lock as well).
            planned = "planned" in inspect.signature(refresher.ensure_fresh).parameters
            token = refresher.load().tokens.refresh_token
            for round_ in range(runs + 1):
                began = time.perf_counter()
                if planned:
                    fresh = refresher.ensure_fresh(force=True, planned=token_digest(token))
                else:
                    fresh = refresher.ensure_fresh(force=True)
                ours = time.perf_counter() - began
                token = fresh.document.tokens.refresh_token
                began = time.perf_counter()
                answer = http.post(url, json=refresh_body(refresh_token))
                answer.raise_for_status()
                refresh_token = answer.json()["refresh_token"]
                post = time.perf_counter() - began
                began = time.perf_counter()
                write_item("bench-floor", "floor", item)
                write = time.perf_counter() - began
                if round_:  # round 0 makes the connections and fills the caches
                    times["daemon_refresh"].append(ours)
                    times["http_post"].append(post)
                    times["keyring_write"].append(write)
        finally:
            http.close()
            app.close()
    ms = {name: round(median(values) * 1000, 2) for name, values in times.items()}
    floor = round(ms["http_post"] + ms["keyring_write"], 2)
    ratio = round(ms["daemon_refresh"] / floor, 2)
    return {
        "runs": runs,
        "median_ms": ms,
        "floor_ms": floor,
        "ratio_to_floor": ratio,
        "goals": {
            "ratio_to_floor_max": IN_PROCESS_GOAL_RATIO,
            "met": ratio <= IN_PROCESS_GOAL_RATIO,
        },
    }


def timed_store(argv: list[str], env: dict[str, str], secret: str) -> float:
    """``secret-tool store`` reads the secret from stdin; time it with the secret piped in."""
    import subprocess  # noqa: PLC0415
    import time  # noqa: PLC0415

    began = time.perf_counter()
    subprocess.run(argv, input=secret, text=True, env=env, check=True, capture_output=True)
    return time.perf_counter() - began
