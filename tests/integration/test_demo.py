"""`make demo` runs end to end: the first of the README's two commands."""

from __future__ import annotations

import subprocess
import sys

from tests.support.harness import REPO


def test_demo_runs_and_leaks_nothing() -> None:
    """The demo logs in, refreshes on demand and in the daemon, logs out, shows no secret."""
    result = subprocess.run(
        [sys.executable, "-m", "demo"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    output = result.stdout + result.stderr

    assert result.returncode == 0, output
    assert "default: refreshed;" in output
    assert "(a new one)" in output
    assert output.count("daemon log: <6>refresh.finished account=default outcome=refreshed") >= 2
    assert "daemon stopped (exit code 0)" in output
    assert "default: logged_out" in output
    assert "demo-client-secret" not in output
