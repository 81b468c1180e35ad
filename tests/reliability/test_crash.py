"""Crash safety: the real `refresh --force` and daemon, killed with SIGKILL at random moments.

200 kills in all (180 of `refresh --force`, 20 of `run`; about 2.5 minutes on an idle 2-core
machine, nearer 4 on a busy one), each followed by the checks in `tests/support/crash.py`: an
intact keyring item, no survivor, no lock held, and a next `refresh --force` that succeeds, or
fails only in the irreducible window and says so. The summary line shows with ``pytest -s`` or
``-rA``, and is appended as JSON to ``$TVMANIAC_RELIABILITY_REPORT`` when set.
``TVMANIAC_CRASH_KILLS`` sets the number of `refresh` kills (fewer on a slow machine); longer
runs: ``python -m bench.reliability``.
"""

from __future__ import annotations

import os

import pytest

from tests.support.crash import Tally, publish, run_crash

pytestmark = pytest.mark.keyring

REFRESH_KILLS = int(os.environ.get("TVMANIAC_CRASH_KILLS", "180"))
DAEMON_KILLS = 20
# Two worlds in parallel: the rounds are mostly interpreter start-up, which is CPU-bound.
WORKERS = 2


def check(tally: Tally, kills: int) -> None:
    """Publish the tally, then assert what must hold after every kill."""
    print(f"\n{tally.line()}")
    publish(tally.summary())
    assert tally.kills >= kills
    assert tally.problems() == []
    assert tally.outcomes()["lost_other"] == 0
    for lost in (r for r in tally.rounds if r.outcome == "lost_in_window"):
        assert lost.verify_code == 77
        assert "interrupted" in lost.verify_message
        assert lost.stored_spent
    assert tally.leaks == []


class TestCrash:
    def test_refresh_killed_at_random_moments(self) -> None:
        """180 kills of `refresh --force`: nothing lost outside the window, no lock left held."""
        check(run_crash(kills=REFRESH_KILLS, mode="refresh", workers=WORKERS), REFRESH_KILLS)

    def test_daemon_killed_at_random_moments(self) -> None:
        """20 kills of the daemon amid its refreshes: the same guarantees as for `refresh`."""
        check(run_crash(kills=DAEMON_KILLS, mode="daemon", workers=WORKERS), DAEMON_KILLS)


# The file store's write path is its own (temporary file, fsync, rename, fsync of the
# directory), so it gets the same kills, fewer of them: the checks after each kill include a
# token file that is neither empty nor truncated.
FILE_REFRESH_KILLS = 40
FILE_DAEMON_KILLS = 8


class TestCrashFileStore:
    def test_refresh_killed_at_random_moments(self) -> None:
        tally = run_crash(kills=FILE_REFRESH_KILLS, mode="refresh", workers=WORKERS, store="file")
        check(tally, FILE_REFRESH_KILLS)

    def test_daemon_killed_at_random_moments(self) -> None:
        tally = run_crash(kills=FILE_DAEMON_KILLS, mode="daemon", workers=WORKERS, store="file")
        check(tally, FILE_DAEMON_KILLS)
