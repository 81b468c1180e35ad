"""Races: 20 `token` loops, a `refresh --force` loop and the daemon, on short-lived tokens.

A 30-second version of the 2-minute experiment (``python -m bench.reliability --races
--seconds 120``). Tokens live 10-20 s and fall due every few seconds, so the processes keep
meeting at the account lock. The summary shows with ``pytest -s`` or ``-rA`` and is appended
as JSON to ``$TVMANIAC_RELIABILITY_REPORT`` when set.
"""

from __future__ import annotations

import pytest

from tests.support.crash import publish, run_races

pytestmark = pytest.mark.keyring

SECONDS = 30


def test_processes_racing_never_spend_a_token_twice() -> None:
    """No invalid_grant, no refresh token presented twice, every printed token valid."""
    report = run_races(seconds=SECONDS)
    print(f"\n{report.line()}")
    publish(report.summary())

    assert report.invalid_grant == 0
    assert report.double_spent == 0
    assert report.refresh_requests == report.refreshes
    assert report.token_failures == []
    assert report.refresh_failures == []
    assert report.tokens_printed > 0
    assert report.invalid_when_printed == []
    assert report.not_issued == 0
    assert report.refreshes > 0
    assert report.daemon_code == 0
    assert report.leaks == []
