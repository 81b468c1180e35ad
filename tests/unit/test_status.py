"""`status`'s report: what it promises, and what it shows without the keyring."""

from __future__ import annotations

from tests.unit.test_refresher import ACCOUNT, START
from tvmaniac_refreshd.cli.status import keeper_advice, render_text, unknown_report
from tvmaniac_refreshd.storage.state import AccountRecord, RefreshResult


class TestKeeperAdvice:
    """What `status` promises about a valid token depends on who will actually refresh it."""

    def test_a_daemon_that_planned_it(self) -> None:
        text = keeper_advice(daemon_pid=42, planned=True, timer=False)
        assert "daemon (pid 42) will refresh it when due" in text

    def test_a_daemon_that_has_not_planned_it_yet(self) -> None:
        text = keeper_advice(daemon_pid=42, planned=False, timer=False)
        assert "has not planned this account yet" in text
        assert "will refresh" not in text

    def test_the_timer(self) -> None:
        assert "hourly timer" in keeper_advice(daemon_pid=None, planned=True, timer=True)

    def test_nobody(self) -> None:
        text = keeper_advice(daemon_pid=None, planned=True, timer=False)
        assert "no daemon or timer is running" in text


def test_unknown_report_keeps_what_the_state_file_knows() -> None:
    """A locked keyring: the token fields are unknown, the last result is still there."""
    record = AccountRecord(
        last_attempt_at=int(START), last_result=RefreshResult.REFRESHED, next_attempt_at=9
    )
    report = unknown_report(ACCOUNT, record, reason="the keyring is locked", daemon_plan=False)

    assert (report.state, report.expires_at, report.last_result) == (
        "unknown",
        None,
        "refreshed",
    )
    assert report.next_attempt_at is None  # no daemon: its old plan is no promise
    text = render_text([report], now=START)
    assert "access token expires: unknown" in text
    assert "the keyring is locked" in text
