"""`make bench` works: the benchmark runs in its smoke mode and writes the JSON report.

It checks the script and the report's shape, not the numbers: CI machines are shared and noisy.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support.keyring_session import missing_tools

REPO = Path(__file__).resolve().parents[2]


def test_bench_smoke_writes_every_section(tmp_path: Path) -> None:
    """The benchmark's smoke mode runs every part and writes a report with each section."""
    # `make test` installs these (scripts/install-system-deps.sh): a missing one is a failure.
    missing = [
        *missing_tools(),
        *(tool for tool in ("curl", "/usr/bin/time") if not shutil.which(tool)),
    ]
    assert missing == [], f"run `make test`, which installs {', '.join(missing)}"
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--no-peers", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "token cold start" in result.stdout
    report = json.loads(out.read_text())
    assert report["mode"] == "smoke"
    assert {"cpu", "cores", "kernel", "python", "date"} <= set(report["machine"])
    cold = report["cold_start"]
    assert {
        "token",
        "python_pass",
        "secret_tool_lookup",
        "python_read_item",
        "token_file_store",
        "token_daemon_running",
    } <= set(cold["median_ms"])
    assert cold["daemon_answers_token"] is True
    assert {"met_ms", "met_ratio"} <= set(cold["goals"])
    assert {"refresh_force", "refresh_force_file_store", "curl_post", "secret_tool_store"} <= set(
        report["refresh"]["median_ms"]
    )
    assert "ratio_to_floor" in report["refresh"]
    session = report["secret_session"]
    assert set(session["read_median_ms"]) == {"plain", "encrypted"}
    assert set(session["cold_process_median_ms"]) == {"plain", "encrypted"}
    in_process = report["refresh"]["in_process"]
    assert {"daemon_refresh", "http_post", "keyring_write"} <= set(in_process["median_ms"])
    idle = report["idle"]
    assert {"one", "many", "one_no_watchdog", "rss_per_extra_account_kib"} <= set(idle)
    assert {"rss_mib", "wakeups_per_hour", "switches", "window_holds"} <= set(idle["one"])
    # The window holds whole periods: a count that may or may not include a tick says nothing.
    holds = idle["one"]["window_holds"]
    assert all(float(count).is_integer() and count >= 1 for count in holds.values()), holds
    (scale,) = report["scale"]
    assert scale["cap_respected"] is True
    assert {"ready_s", "rss_ready_mib", "refresh_all_s", "peak_in_flight"} <= set(scale)
    assert report["peers"] == {"skipped": "--no-peers"}
