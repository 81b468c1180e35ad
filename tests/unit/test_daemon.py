"""The daemon's decisions, driven directly with a fake planner and clock: no threads, no sleep."""

from __future__ import annotations

import dataclasses
import datetime
import errno
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from apscheduler.events import EVENT_JOB_MISSED
from apscheduler.schedulers.background import BackgroundScheduler

from tests.fakes import FakeClock, MemoryBackend
from tests.unit.test_refresher import ACCOUNT, START, FakeTrakt, initial
from tvmaniac_refreshd.config.settings import Alerts, Config, StoreSettings
from tvmaniac_refreshd.core.errors import SessionRejected, StoreUnavailable, TransientError
from tvmaniac_refreshd.core.logs import REDACTED, redact_text
from tvmaniac_refreshd.core.policy import RetryPolicy, refresh_due_at
from tvmaniac_refreshd.core.tokens import TokenSet, encode_document
from tvmaniac_refreshd.daemon.alerts import AlertEvent
from tvmaniac_refreshd.daemon.decisions import Daemon
from tvmaniac_refreshd.daemon.refresher import Refresher
from tvmaniac_refreshd.daemon.scheduler import Scheduler
from tvmaniac_refreshd.daemon.unsaved import UnsavedPairs
from tvmaniac_refreshd.storage.keyring_store import KeyringStore
from tvmaniac_refreshd.storage.state import StateFiles

JOB = "refresh:default"


class FakePlanner:
    """Records what the daemon asks the scheduler for."""

    def __init__(self) -> None:
        self.jobs: dict[str, tuple[float, Callable[[], object]]] = {}
        self.periodic: dict[str, float] = {}
        # job id -> (func, inline): what each periodic job runs, and on which thread
        self.periodic_runs: dict[str, tuple[Callable[[], object], bool]] = {}

    def at(self, job_id: str, when: float, func: Callable[[], object]) -> None:
        self.jobs[job_id] = (when, func)

    def every(
        self, job_id: str, seconds: float, func: Callable[[], object], *, inline: bool = False
    ) -> None:
        self.periodic[job_id] = seconds
        self.periodic_runs[job_id] = (func, inline)

    def cancel(self, job_id: str) -> None:
        self.jobs.pop(job_id, None)

    def planned(self, job_id: str) -> float | None:
        job = self.jobs.get(job_id)
        return None if job is None else job[0]

    def run_due(self, now: float) -> None:
        """Run every job whose time has come, as the scheduler would."""
        for job_id, (when, func) in list(self.jobs.items()):
            if when <= now and self.jobs.get(job_id) == (when, func):
                func()


class FakeAlerter:
    def __init__(self) -> None:
        self.events: list[tuple[str, AlertEvent, str]] = []

    def emit(
        self,
        account: str,
        event: AlertEvent,
        settings: Alerts,
        message: str,
        *,
        now: float,
        provider: str | None = None,
    ) -> None:
        self.events.append((account, event, message))


class World:
    def __init__(self, tmp_path: Path, account: object = ACCOUNT) -> None:
        self.clock = FakeClock(START)
        self.mono = FakeClock(1000.0)
        self.trakt = FakeTrakt(self.clock)
        self.backend = MemoryBackend()
        self.store = KeyringStore(StoreSettings(), lambda: self.backend)
        self.states = StateFiles(tmp_path / "state")
        self.planner = FakePlanner()
        self.alerter = FakeAlerter()
        self.account = account
        self.tmp_path = tmp_path
        self.unsaved = UnsavedPairs()  # one per process, as the composition root makes it
        self.store.save(initial(START))
        self.daemon = Daemon(
            Config(source="test", accounts={"default": account}),  # type: ignore[dict-item]
            planner=self.planner,
            refresher=self.refresher,
            states=self.states,
            alerter=self.alerter,  # type: ignore[arg-type]
            clock=self.clock,
            monotonic=self.mono,
            share=lambda: 0.0,
        )

    def refresher(self, account: object) -> Refresher:
        return Refresher(
            account,  # type: ignore[arg-type]
            store=self.store,
            states=self.states,
            lock_dir=self.tmp_path / "locks",
            lock_timeout=1,
            client=lambda: self.trakt,
            clock=self.clock,
            sleep=self.clock.sleep,
            unsaved=self.unsaved,
        )

    def planned(self) -> float | None:
        job = self.planner.jobs.get(JOB)
        return None if job is None else job[0]

    def due(self) -> float:
        document = self.store.load("default")
        assert document is not None
        return float(refresh_due_at(document.tokens, ACCOUNT.refresh, salt="default"))

    def advance_to(self, when: float) -> None:
        self.clock.advance(when - self.clock())
        self.planner.run_due(self.clock())


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


@pytest.fixture
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Local time is UTC, so that STATUS= times read the same on every machine."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


class TestPlanning:
    def test_start_plans_at_due_time(self, world: World) -> None:
        """At start, the account is planned at its token's due time, with no request."""
        world.daemon.plan_all()

        assert world.due() == world.planned()
        assert world.trakt.spent == []
        assert world.states.load("default").next_attempt_at == int(world.due())

    def test_due_job_refreshes_and_plans_the_next(self, world: World) -> None:
        """When the job fires, the token is refreshed and the next one is planned."""
        world.daemon.plan_all()
        world.advance_to(world.due())

        assert len(world.trakt.spent) == 1
        assert world.due() == world.planned()
        assert world.planned() > world.clock()  # type: ignore[operator]
        assert [event for _, event, _ in world.alerter.events] == [AlertEvent.REFRESHED]

    def test_the_daemons_refresh_reads_the_item_once(self, world: World) -> None:
        """It planned for a known token: one read under the lock, then the probe, the new
        pair and its read-back (the refresher's two reads were one read too many here)."""
        world.daemon.plan_all()
        due = world.due()  # a read of its own
        world.backend.calls = 0
        world.advance_to(due)

        assert len(world.trakt.spent) == 1
        assert world.backend.calls == 4  # read, probe write, write, read-back

    def test_pair_due_on_arrival_does_not_storm(self, world: World) -> None:
        """A new pair that is already due (server clock far behind) waits a tenth of its life."""
        world.daemon.plan_all()
        original = world.trakt.refresh

        def stale(refresh_token: str, *, now: float) -> TokenSet:
            tokens = original(refresh_token, now=now)
            return TokenSet(
                tokens.access_token, tokens.refresh_token, int(now) - 600, 1000, int(now) + 400
            )

        world.trakt.refresh = stale  # type: ignore[method-assign]
        world.advance_to(world.due())

        assert world.planned() == world.clock() + 100

    def test_late_job_still_refreshes(self, world: World) -> None:
        """A job that fires hours late (after a suspend) refreshes at once."""
        world.daemon.plan_all()
        world.advance_to(world.due() + 6 * 3600)

        assert len(world.trakt.spent) == 1


class BulkBackend(MemoryBackend):
    """A backend that reads many items at once, as the direct Secret Service does."""

    bulk_reads: list[list[str]]

    def get_passwords(self, service: str, usernames: list[str]) -> dict[str, str | None]:
        self.bulk_reads.append(list(usernames))
        return {name: self.items.get((service, name)) for name in usernames}


class TestPlanningInBulk:
    """At READY, a thousand accounts: one bulk read and no state file written twice."""

    def world(self, tmp_path: Path, names: list[str]) -> tuple[World, BulkBackend]:
        world = World(tmp_path)
        backend = BulkBackend(items=dict(world.backend.items))
        backend.bulk_reads = []
        world.backend = backend
        world.store = KeyringStore(StoreSettings(), lambda: backend)
        for name in names[1:]:
            document = initial(START)
            world.store.save(dataclasses.replace(document, account=name))
        accounts = {name: dataclasses.replace(ACCOUNT, name=name) for name in names}
        world.daemon = Daemon(
            Config(source="test", accounts=accounts),
            planner=world.planner,
            refresher=world.refresher,
            states=world.states,
            alerter=world.alerter,  # type: ignore[arg-type]
            clock=world.clock,
            monotonic=world.mono,
            share=lambda: 0.0,
            read_ahead=world.store.read_ahead,
        )
        return world, backend

    def test_plan_all_reads_every_account_in_one_bulk_read(self, tmp_path: Path) -> None:
        names = ["default", "b", "c", "d"]
        world, backend = self.world(tmp_path, names)
        backend.calls = 0
        world.daemon.plan_all()

        assert backend.bulk_reads == [names]
        assert backend.calls == 0  # no account read one by one
        assert sorted(world.planner.jobs) == sorted(f"refresh:{name}" for name in names)

    def test_a_refresh_reads_the_item_itself_not_the_bulk_copy(self, tmp_path: Path) -> None:
        """Copies are for the planning thread only, and a save drops its account's copy."""
        world, backend = self.world(tmp_path, ["default"])
        before = initial(START)
        after = initial(START + 60)  # another process refreshed meanwhile
        with world.store.read_ahead(["default"]):
            backend.items[("tvmaniac-refreshd", "default")] = encode_document(after)
            elsewhere: list[object] = []
            thread = threading.Thread(target=lambda: elsewhere.append(world.store.load("default")))
            thread.start()
            thread.join()
            here = world.store.load("default")

        assert elsewhere == [after]
        assert here == before  # this thread's copy, read at the block's start
        with world.store.read_ahead(["default"]):
            world.store.save(before)
            backend.calls = 0
            assert world.store.load("default") == before
        assert backend.calls == 1  # read from the keyring, not from the copy

    def test_every_accounts_live_tokens_stay_redacted_at_600_accounts(self, tmp_path: Path) -> None:
        """Redaction held only the last 512 secrets: past 250 accounts, planning pushed the
        first accounts' live tokens out of it, and a line holding one was no longer redacted."""
        names = ["default", *(f"account{index:03d}" for index in range(1, 600))]
        world, _ = self.world(tmp_path, names)
        for name in names:
            document = initial(START)
            tokens = dataclasses.replace(
                document.tokens,
                access_token=f"access-{name}-xxxxxxxx",
                refresh_token=f"refresh-{name}-xxxxxxxx",
            )
            world.store.save(dataclasses.replace(document, account=name, tokens=tokens))
        world.daemon.plan_all()
        world.daemon.plan_all()  # again: each registered once, nothing pushed out

        line = "Authorization: Bearer access-default-xxxxxxxx; refresh-default-xxxxxxxx"
        assert redact_text(line) == f"Authorization: Bearer {REDACTED}; {REDACTED}"
        assert redact_text("access-account599-xxxxxxxx") == REDACTED

    def test_a_planned_time_is_written_whole_but_not_waited_for(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A planned time is written again at every start: its file is synced (a power cut
        leaves the old record or the new, whole) but not its directory entry, which cost a
        second sync per account at READY."""
        import os  # noqa: PLC0415
        import stat  # noqa: PLC0415

        world, _ = self.world(tmp_path, ["default", "b", "c"])
        synced: list[str] = []
        real_fsync = os.fsync

        def fsync(fd: int) -> None:
            synced.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
            real_fsync(fd)

        monkeypatch.setattr(os, "fsync", fsync)
        world.daemon.plan_all()

        assert synced == ["file", "file", "file"]
        assert world.states.load("b").next_attempt_at is not None

    def test_a_plan_that_did_not_change_writes_no_state_file(self, tmp_path: Path) -> None:
        world, _ = self.world(tmp_path, ["default"])
        world.daemon.plan_all()
        stamp = world.states.stamp("default")
        world.daemon.plan_all()

        assert world.states.stamp("default") == stamp
        assert world.states.load("default").next_attempt_at == int(world.due())


class TestFailures:
    def test_backoff_grows_and_is_capped(self, world: World) -> None:
        """Each transient failure doubles the wait, up to the cap; nothing is deleted."""
        world.daemon.plan_all()
        world.trakt.fail_with.extend([TransientError("down")] * 6)
        delays = []
        world.advance_to(world.due())
        for _ in range(6):
            planned = world.planned()
            assert planned is not None
            delays.append(planned - world.clock())
            world.advance_to(planned)

        # share=0 gives the lower half of each step: 30, 60, 120, ... capped at 900/2
        assert delays == [30.0, 60.0, 120.0, 240.0, 450.0, 450.0]
        assert world.store.load("default") is not None
        assert len(world.trakt.spent) == 7

    def test_retry_after_is_a_floor(self, world: World) -> None:
        """A 429's Retry-After is waited out even when the backoff step is shorter."""
        world.daemon.plan_all()
        world.trakt.fail_with.append(TransientError("429", retry_after=143))
        world.advance_to(world.due())

        assert world.planned() == world.clock() + 143

    def test_rejection_stops_planning(self, world: World) -> None:
        """invalid_grant cancels the job, alerts once, and later planning sends nothing."""
        world.daemon.plan_all()
        world.trakt.fail_with.append(SessionRejected("invalid_grant"))
        world.advance_to(world.due())
        world.daemon.plan_all()
        world.clock.advance(86400)
        world.daemon.plan_all()

        assert world.planned() is None
        assert len(world.trakt.spent) == 1
        assert world.daemon.status_line() == "default: login needed"
        assert AlertEvent.REAUTH_REQUIRED in [event for _, event, _ in world.alerter.events]

    def test_keyring_unavailable_is_retried(self, world: World) -> None:
        """A locked keyring at start is a degraded state that retries, then recovers."""
        world.backend.fail_with = StoreUnavailable("locked")
        world.daemon.plan_all()

        assert world.daemon.watches["default"].condition == "keyring_unavailable"
        retry = world.planned()
        assert retry is not None
        world.backend.fail_with = None
        world.advance_to(retry)
        assert world.planned() == world.due()

    def test_a_pair_the_keyring_cannot_store_is_kept_and_stored_later(self, world: World) -> None:
        """The keyring goes away right after the provider rotated the pair: the daemon keeps
        the new pair, retries storing it, and neither drops it nor spends again (issue 23)."""
        world.daemon.plan_all()
        real_set = world.backend.set_password

        def gone_after_the_answer(service: str, username: str, password: str) -> None:
            if world.trakt.spent:  # the write probe before the request still works
                raise StoreUnavailable("the keyring went away")
            real_set(service, username, password)

        world.backend.set_password = gone_after_the_answer  # type: ignore[method-assign]
        world.advance_to(world.due())

        assert world.trakt.spent == ["refresh-0000-xxxxxxxx"]
        assert world.daemon.watches["default"].condition == "keyring_unavailable"
        retry = world.planned()
        assert retry is not None
        world.backend.set_password = real_set  # type: ignore[method-assign]
        world.advance_to(retry)

        stored = world.store.load("default")
        assert stored is not None
        assert stored.tokens.refresh_token == "refresh-0001-xxxxxxxx"
        assert world.trakt.spent == ["refresh-0000-xxxxxxxx"]
        assert world.daemon.watches["default"].condition == "scheduled"
        assert world.planned() == world.due()

    def test_long_failure_alerts(self, tmp_path: Path) -> None:
        """Failing for longer than failing_for raises the FAILING alert."""
        account = ACCOUNT.__class__(
            **{
                **ACCOUNT.__dict__,
                "alerts": Alerts(failing_for=600),
                "retry": RetryPolicy(initial=300, maximum=300),
            }
        )
        world = World(tmp_path, account)
        world.daemon.plan_all()
        world.trakt.fail_with.extend([TransientError("down")] * 5)
        world.advance_to(world.due())
        for _ in range(4):
            world.advance_to(world.planned())  # type: ignore[arg-type]

        assert AlertEvent.FAILING in [event for _, event, _ in world.alerter.events]

    def test_cli_refresh_during_backoff_replans_from_the_new_tokens(self, world: World) -> None:
        """Issue 26 #3: new tokens stored by the CLI while the daemon backs off end the
        backoff: the daemon plans from their due time, not the old retry."""
        world.daemon.plan_all()
        world.trakt.fail_with.extend([TransientError("503")] * 3)
        world.advance_to(world.due())
        world.advance_to(world.planned())  # type: ignore[arg-type]
        retry = world.planned()
        assert retry is not None
        assert world.daemon.watches["default"].attempts == 2
        # A CLI `refresh` stores a short-lived pair that falls due before the old retry.
        now = int(world.clock())
        short = TokenSet("access-cli-xxxxxxxx", "refresh-cli-xxxxxxxx", now, 40, now + 40)
        document = world.store.load("default")
        assert document is not None
        world.store.save(document.__class__(**{**document.__dict__, "tokens": short}))
        world.states.update("default", last_success_at=int(world.clock()))
        world.daemon.notice_changes()

        assert world.planned() == world.due()
        assert world.due() < retry
        assert world.daemon.watches["default"].attempts == 0
        assert world.daemon.watches["default"].condition == "scheduled"

    def test_status_line_names_a_failure_in_statuss_words(self, world: World) -> None:
        """Issue 26 #4: STATUS= says "last attempt: transient" as `status` does, never a
        Python class name."""
        world.daemon.plan_all()
        world.trakt.fail_with.append(TransientError("503"))
        world.advance_to(world.due())

        line = world.daemon.status_line()
        assert line.endswith("(last attempt: transient)"), line
        assert "Error" not in line


class TestTick:
    def test_clock_jump_replans_at_once(self, world: World) -> None:
        """A resume (wall clock far ahead of monotonic) makes an overdue account run now."""
        world.daemon.plan_all()
        world.daemon.tick()
        world.clock.advance(7 * 86400)  # a week asleep
        world.mono.advance(600)
        world.daemon.tick()

        planned = world.planned()
        assert planned is not None
        assert planned <= world.clock()

    def test_login_by_cli_is_picked_up(self, world: World) -> None:
        """Logged out at start; a login (keyring + state file) is noticed on the next tick."""
        world.store.delete("default")
        world.daemon.plan_all()
        assert (world.planned(), world.daemon.status_line()) == (None, "default: not logged in")
        world.store.save(initial(world.clock()))
        world.states.update("default", last_success_at=int(world.clock()))
        world.daemon.tick()

        assert world.planned() == world.due()

    def test_logout_by_cli_cancels(self, world: World) -> None:
        """A logout (keyring item and state file gone) cancels the job on the next tick."""
        world.daemon.plan_all()
        world.store.delete("default")
        world.states.delete("default")
        world.daemon.tick()

        assert world.planned() is None

    def test_status_line_summarizes_many_accounts(self, world: World, utc: None) -> None:
        """With many accounts, STATUS= gives counts and the soonest refresh, not a long list."""
        from tvmaniac_refreshd.daemon.decisions import Condition, Watch  # noqa: PLC0415

        now = world.clock()
        for index in range(6):
            world.daemon.watches[f"a{index}"] = Watch(Condition.SCHEDULED, now + 3600 * (index + 1))
        world.daemon.watches["b"] = Watch(Condition.LOGIN_NEEDED)

        assert world.daemon.status_line() == (
            "7 accounts: 1 login needed, 6 scheduled; next refresh at 09:00 UTC"
        )

    def test_status_line_lists_up_to_four_shown_accounts(self, world: World) -> None:
        """Accounts with nothing to show do not count toward the summary's threshold."""
        from tvmaniac_refreshd.daemon.decisions import Condition, Watch  # noqa: PLC0415

        world.daemon.watches.clear()
        for index in range(4):
            world.daemon.watches[f"a{index}"] = Watch(Condition.SCHEDULED, world.clock() + 3600)
        # No retry planned yet: nothing to show for it.
        world.daemon.watches["b"] = Watch(Condition.KEYRING_UNAVAILABLE)

        assert world.daemon.status_line().count("next refresh at") == 4

    def test_planning_every_account_announces_once(self, world: World) -> None:
        """plan_all reports the status once at its end, not once per account."""
        # Three names for the one stored account: three plans, each from the same item.
        accounts = dict.fromkeys(("default", "second", "third"), ACCOUNT)
        world.daemon.config = Config(source="test", accounts=accounts)
        announced: list[str] = []
        world.daemon._on_change = lambda: announced.append(world.daemon.status_line())

        world.daemon.plan_all()

        assert len(world.daemon.watches) == 3
        assert announced == [world.daemon.status_line()]

    def test_reload_drops_removed_accounts(self, world: World) -> None:
        """A reload without the account cancels its job."""
        world.daemon.plan_all()
        world.daemon.reload(Config(source="test", accounts={}))

        assert world.planned() is None
        assert world.daemon.status_line() == "no accounts"


class TestScheduler:
    def test_late_job_runs_with_our_defaults(self) -> None:
        """A date job five seconds late still runs (APScheduler's default would drop it)."""
        ran = threading.Event()
        scheduler = Scheduler(max_workers=1)
        scheduler.at("late", time.time() - 5, ran.set)
        scheduler.start()
        try:
            assert ran.wait(30)
        finally:
            scheduler.shutdown()

    def test_job_planning_itself_while_running_is_not_dropped(self) -> None:
        """A job that re-plans itself for a past time while still running runs again."""
        second_started = threading.Event()
        first_finished = threading.Event()
        runs: list[int] = []
        scheduler = Scheduler(max_workers=2)

        def job() -> None:
            runs.append(len(runs))
            if len(runs) == 1:
                scheduler.at("self", time.time() - 1, job)
                # Still running when the second run becomes due: wait for it (bounded).
                second_started.wait(10)
                first_finished.set()
            else:
                second_started.set()

        scheduler.at("self", time.time(), job)
        scheduler.start()
        try:
            assert first_finished.wait(30)
            assert second_started.is_set()
        finally:
            scheduler.shutdown()

    def test_default_grace_would_drop_it(self) -> None:
        """The reason for misfire_grace_time=None: with the defaults the late job is missed."""
        missed = threading.Event()
        ran = threading.Event()
        scheduler = BackgroundScheduler(timezone="UTC")
        scheduler.add_listener(lambda _event: missed.set(), EVENT_JOB_MISSED)
        scheduler.add_job(
            ran.set,
            "date",
            run_date=datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=5),
        )
        scheduler.start()
        try:
            assert missed.wait(30)
            assert not ran.is_set()
        finally:
            scheduler.shutdown(wait=False)


class TestStatusTimes:
    def test_status_line_gives_absolute_local_times(self, world: World, utc: None) -> None:
        """STATUS= says when, not "in 28s", which goes stale while systemctl keeps showing it."""
        world.daemon.plan_all()
        due = world.due()
        expected = datetime.datetime.fromtimestamp(due, tz=datetime.UTC)

        text = f"default: next refresh at {expected:%Y-%m-%d %H:%M} UTC"  # days ahead: dated
        assert world.daemon.status_line() == text
        world.clock.advance(600)  # the text does not depend on when it is read
        assert world.daemon.status_line() == text

    def test_another_day_carries_the_date(self, utc: None) -> None:
        from tvmaniac_refreshd.daemon.decisions import clock_time  # noqa: PLC0415

        assert clock_time(START + 2 * 86400, START) == "2027-01-17 08:00 UTC"

    def test_local_zone_is_named(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from tvmaniac_refreshd.daemon.decisions import clock_time  # noqa: PLC0415

        monkeypatch.setenv("TZ", "Europe/Berlin")
        time.tzset()
        try:
            assert clock_time(START, START) == "09:00 CET"
        finally:
            monkeypatch.undo()
            time.tzset()


class TestTellingTheDaemon:
    def test_notice_changes_replans_a_cli_login_without_a_tick(self, world: World) -> None:
        """What SIGUSR1 runs: a login by the CLI is planned, with no clock comparison needed."""
        world.store.delete("default")
        world.daemon.plan_all()
        world.store.save(initial(world.clock()))
        world.states.update("default", last_success_at=int(world.clock()))
        world.daemon.notice_changes()

        assert world.planned() == world.due()
        assert world.states.load("default").next_attempt_at == int(world.due())

    def test_notice_changes_leaves_unchanged_accounts_alone(self, world: World) -> None:
        world.daemon.plan_all()
        world.planner.jobs.clear()
        world.daemon.notice_changes()

        assert world.planned() is None

    def test_log_plan_gives_each_account_a_line(self, world: World) -> None:
        """At start every ACCOUNT= has a journal entry, before any refresh happens."""
        from structlog.testing import capture_logs  # noqa: PLC0415

        world.daemon.plan_all()
        with capture_logs() as logs:
            world.daemon.log_plan()

        assert logs == [
            {
                "event": "daemon.planned",
                "account": "default",
                "condition": "scheduled",
                "next_attempt_at": int(world.due()),
                "log_level": "info",
            }
        ]


class TestRecordingThePlan:
    """Issue 22, item 6: a full disk while the daemon records its plan."""

    def test_a_full_disk_is_a_warning_and_the_plan_stands(
        self, world: World, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from structlog.testing import capture_logs  # noqa: PLC0415

        def full(*_: object, **__: object) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        # The disk, not the state module: StateFiles translates ENOSPC into StateUnwritable.
        monkeypatch.setattr("tvmaniac_refreshd.storage.state.write_atomically", full)
        with capture_logs() as logs:
            world.daemon.run_account("default", refresh=False)  # must not raise

        events = [entry["event"] for entry in logs]
        assert "daemon.unexpected_error" not in events
        assert "daemon.state_not_written" in events
        assert world.planned() == world.due()
