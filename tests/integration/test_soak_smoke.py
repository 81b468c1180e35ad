"""CI's short version of the soak (bench/soak.py): the script works and the daemon holds up."""

from __future__ import annotations

from bench.soak import soak


def test_short_soak() -> None:
    """Forty seconds of five-second tokens: refreshes happen, none fails, nothing leaks out."""
    report = soak(40, 5, warmup=10)

    assert report["exit_code"] == 0
    assert report["invalid_grant"] == 0
    assert report["warnings_and_errors"] == 0, report["first_problem"]
    assert int(str(report["refreshes"])) >= 5
