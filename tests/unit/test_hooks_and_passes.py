"""Issue 26: hooks outside the unit's sandbox (or a hint when they ran inside it), and the
alerts of a timer's pass, with their reminders kept in the state file."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from tests.fakes import FakeClock, MemoryBackend
from tests.unit.test_refresher import ACCOUNT, START, FakeTrakt, initial
from tvmaniac_refreshd.config.settings import Alerts, StoreSettings
from tvmaniac_refreshd.core.errors import (
    NotLoggedIn,
    RefreshdError,
    SessionRejected,
    TransientError,
)
from tvmaniac_refreshd.daemon.alerts import Alerter, AlertEvent
from tvmaniac_refreshd.daemon.hook_sandbox import current_unit
from tvmaniac_refreshd.daemon.pass_alerts import PassAlerts, StateReminders
from tvmaniac_refreshd.daemon.refresher import Fresh, Freshness, Refresher
from tvmaniac_refreshd.storage.keyring_store import KeyringStore
from tvmaniac_refreshd.storage.state import StateFiles, token_digest

DAY = 86400
T0 = 1_800_000_000.0
HOOK = ("/home/u/bin/on-alert", "--flag")
UNIT = "tvmaniac-refreshd-refresh.service"
CGROUP = f"0::/user.slice/user-1000.slice/user@1000.service/app.slice/{UNIT}\n"


class Runner:
    """Answers every command with ``status`` and ``stderr``; records what it was given."""

    def __init__(self, status: int = 0, stderr: bytes = b"") -> None:
        self.status = status
        self.stderr = stderr
        self.calls: list[tuple[list[str], dict[str, Any]]] = []

    def __call__(self, argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
        self.calls.append((list(argv), kwargs))
        return subprocess.CompletedProcess(argv, self.status, b"", self.stderr)


@pytest.fixture
def records() -> Iterator[list[MutableMapping[str, Any]]]:
    with capture_logs() as captured:
        yield captured


def alert(runner: Runner, *, unit: str | None, systemd_run: bool = True) -> None:
    def which(name: str) -> str | None:
        return None if name == "systemd-run" and not systemd_run else f"/usr/bin/{name}"

    alerter = Alerter(runner=runner, which=which, platform="linux", unit=unit)
    settings = Alerts(desktop=False, on_reauth_required=HOOK)
    alerter.emit("default", AlertEvent.REAUTH_REQUIRED, settings, "login needed", now=T0)
    assert alerter.close(timeout=60)


class TestWhereHooksRun:
    def test_inside_a_unit_a_hook_runs_as_a_transient_unit(
        self, records: list[MutableMapping[str, Any]]
    ) -> None:
        """Outside the sandbox, with our variables passed by name (no message in an argv), a
        time limit the manager enforces, and `hook.finished` at info naming the unit."""
        runner = Runner()
        alert(runner, unit=UNIT)

        ((argv, kwargs),) = runner.calls
        assert argv[:3] == ["systemd-run", "--user", "--quiet"]
        assert argv[argv.index("--") + 1 :] == list(HOOK)
        assert "--setenv=TVMANIAC_REFRESHD_MESSAGE" in argv
        assert "--property=RuntimeMaxSec=30" in argv
        assert "login needed" not in " ".join(argv)
        assert kwargs["env"]["TVMANIAC_REFRESHD_MESSAGE"] == "login needed"
        (finished,) = [r for r in records if r["event"] == "hook.finished"]
        assert finished["log_level"] == "info"
        assert finished["unit"].startswith("tvmaniac-refreshd-hook-")

    def test_outside_systemd_a_hook_runs_directly(
        self, records: list[MutableMapping[str, Any]]
    ) -> None:
        runner = Runner()
        alert(runner, unit=None)

        ((argv, _),) = runner.calls
        assert argv == list(HOOK)
        assert [r["log_level"] for r in records if r["event"] == "hook.finished"] == ["info"]

    def test_a_hook_stopped_by_the_sandbox_says_why_and_gives_the_drop_in(
        self, records: list[MutableMapping[str, Any]]
    ) -> None:
        """In a unit without systemd-run the hook runs sandboxed; EROFS names the unit's
        drop-in, and the captured stderr loses its final newline."""
        runner = Runner(1, b"sh: 1: cannot create /home/u/x.log: Read-only file system\n")
        alert(runner, unit=UNIT, systemd_run=False)

        ((argv, _),) = runner.calls
        assert argv == list(HOOK)
        (failed,) = [r for r in records if r["event"] == "hook.failed"]
        assert failed["stderr"] == "sh: 1: cannot create /home/u/x.log: Read-only file system"
        assert f"systemctl --user edit {UNIT}" in failed["hint"]
        assert "BindPaths=" in failed["hint"]
        assert "ReadWritePaths=" in failed["hint"]

    def test_a_missing_hook_program_under_the_sandbox_gets_the_hint(
        self, records: list[MutableMapping[str, Any]]
    ) -> None:
        def missing(argv: list[str], **_: Any) -> subprocess.CompletedProcess[bytes]:
            raise FileNotFoundError(2, "No such file or directory", argv[0])

        alerter = Alerter(runner=missing, which=lambda _: None, platform="linux", unit=UNIT)
        settings = Alerts(desktop=False, on_error=HOOK)
        alerter.emit("default", AlertEvent.FAILING, settings, "failing", now=T0)
        assert alerter.close(timeout=60)

        (failed,) = [r for r in records if r["event"] == "hook.failed"]
        assert "sandbox" in failed["hint"]

    def test_a_failure_unlike_the_sandboxs_gets_no_hint(
        self, records: list[MutableMapping[str, Any]]
    ) -> None:
        alert(Runner(3, b"usage: on-alert\n"), unit=UNIT, systemd_run=False)

        (failed,) = [r for r in records if r["event"] == "hook.failed"]
        assert "hint" not in failed
        assert failed["stderr"] == "usage: on-alert"

    def test_desktop_failure_drops_the_final_newline(
        self, records: list[MutableMapping[str, Any]]
    ) -> None:
        """#11: no dangling line at the end of the journal's MESSAGE."""
        alerter = Alerter(
            runner=Runner(1, b"no server\n"), which=lambda n: n, platform="linux", unit=None
        )
        alerter.emit("default", AlertEvent.REAUTH_REQUIRED, Alerts(), "login", now=T0)
        assert alerter.close(timeout=60)

        (failed,) = [r for r in records if r["event"] == "desktop.failed"]
        assert failed["stderr"] == "no server"


class TestCurrentUnit:
    def test_the_unit_comes_from_the_cgroup(self, tmp_path: Path) -> None:
        cgroup = tmp_path / "cgroup"
        cgroup.write_text("9:name=systemd:/x\n" + CGROUP)

        assert current_unit({"INVOCATION_ID": "abc"}, str(cgroup)) == UNIT

    def test_not_in_a_unit(self, tmp_path: Path) -> None:
        cgroup = tmp_path / "cgroup"
        cgroup.write_text(CGROUP)
        session = "0::/user.slice/user-1000.slice/session-3.scope\n"

        assert current_unit({}, str(cgroup)) is None
        cgroup.write_text(session)
        assert current_unit({"INVOCATION_ID": "abc"}, str(cgroup)) is None


class FakeAlerter:
    def __init__(self) -> None:
        self.events: list[tuple[AlertEvent, str]] = []

    def emit(
        self, account: str, event: AlertEvent, settings: Alerts, message: str, **_: Any
    ) -> None:
        self.events.append((event, message))

    def close(self, timeout: float | None = None) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def states(tmp_path: Path) -> StateFiles:
    return StateFiles(tmp_path / "state")


class TestPassAlerts:
    """A timer's pass alerts as the daemon does, for the same outcomes."""

    def passes(self, states: StateFiles, clock: Clock) -> tuple[PassAlerts, FakeAlerter]:
        fake = FakeAlerter()
        return PassAlerts(states, clock, fake), fake  # type: ignore[arg-type]

    def test_a_refresh_runs_on_refreshed(self, states: StateFiles) -> None:
        alerts, fake = self.passes(states, Clock())
        alerts.outcome(ACCOUNT, Fresh(initial(T0), Freshness.REFRESHED))
        alerts.outcome(ACCOUNT, Fresh(initial(T0), Freshness.NOT_DUE))

        assert fake.events == [(AlertEvent.REFRESHED, "The Trakt token was refreshed.")]

    def test_a_rejection_is_told_and_logged_out_is_not(self, states: StateFiles) -> None:
        alerts, fake = self.passes(states, Clock())
        alerts.outcome(ACCOUNT, SessionRejected("needs a new login"))
        alerts.outcome(ACCOUNT, NotLoggedIn("not logged in"))

        assert fake.events == [(AlertEvent.REAUTH_REQUIRED, "needs a new login")]

    def test_failures_are_told_once_they_last_failing_for(self, states: StateFiles) -> None:
        """Since when it fails is kept between passes (processes) in the state file."""
        clock = Clock()
        for hours in range(8):
            clock.now = T0 + hours * 3600
            alerts, fake = self.passes(states, clock)  # a new process each hour
            alerts.outcome(ACCOUNT, TransientError("503"))
            if hours < 6:
                assert fake.events == []
        assert fake.events == [(AlertEvent.FAILING, "Refreshing has failed for 7h: 503")]
        self.passes(states, clock)[0].outcome(ACCOUNT, Fresh(initial(T0), Freshness.NOT_DUE))
        assert states.load("default").failing_since is None

    def test_reminders_survive_the_process(self, states: StateFiles) -> None:
        """remind_every holds across passes: a reauth is told once a day, not every hour."""
        told = []
        for hours in (0, 1, 23, 24):
            reminders = StateReminders(states)
            now = T0 + hours * 3600
            told.append(reminders.should_tell("default", AlertEvent.REAUTH_REQUIRED, DAY, now))
        assert told == [True, False, False, True]
        assert StateReminders(states).should_tell("default", AlertEvent.REFRESHED, DAY, T0)
        assert states.load("default").told_reauth_at is None


@pytest.fixture
def world(tmp_path: Path) -> tuple[Any, ...]:
    """A refresher of a stored, not yet due token, with its fake provider, clock and files."""
    clock = FakeClock(START)
    trakt = FakeTrakt(clock)
    memory = MemoryBackend()
    store = KeyringStore(StoreSettings(), lambda: memory)
    states = StateFiles(tmp_path / "state")
    refresher = Refresher(
        ACCOUNT,
        store=store,
        states=states,
        lock_dir=tmp_path / "locks",
        lock_timeout=1,
        client=lambda: trakt,
        clock=clock,
    )
    store.save(initial(START))
    return refresher, trakt, clock, store, states


class TestEveryResultIsLogged:
    """#5: each `ensure_fresh` gives one `refresh.finished` with its outcome (REFRESH_RESULT=
    in the journal), whether or not a request was sent."""

    @pytest.mark.parametrize(
        ("prepare", "outcome", "level"),
        [
            ("fresh", "not_due", "info"),
            ("logged_out", "logged_out", "info"),
            ("rejected", "reauth_required", "warning"),
            ("due", "refreshed", "info"),
        ],
    )
    def test_one_entry_per_call(
        self,
        world: tuple[Any, ...],
        records: list[MutableMapping[str, Any]],
        prepare: str,
        outcome: str,
        level: str,
    ) -> None:
        refresher, _, clock, store, states = world
        if prepare == "logged_out":
            store.delete("default")
        elif prepare == "rejected":
            document = store.load("default")
            states.update(
                "default",
                reauth_token=token_digest(document.tokens.refresh_token),
                reauth_reason="revoked",
            )
        elif prepare == "due":
            clock.advance(604800)
        with contextlib.suppress(RefreshdError):
            refresher.ensure_fresh()

        finished = [r for r in records if r["event"] == "refresh.finished"]
        assert [(r["outcome"], r["log_level"]) for r in finished] == [(outcome, level)]
        assert finished[0]["account"] == "default"
