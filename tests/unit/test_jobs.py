"""Jobs: the [jobs.NAME] config, the rules of a run (token window, exit codes, alerts, backoff,
the network constraint), the daemon's plan and STATUS=, and refreshes waiting for a job."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.harness import wait_until
from tests.unit.test_daemon import JOB, World
from tests.unit.test_refresher import ACCOUNT
from tvmaniac_refreshd.config.jobs import DailyAt, Job
from tvmaniac_refreshd.config.settings import Config, parse_config
from tvmaniac_refreshd.core.errors import ConfigError, TokenInUse
from tvmaniac_refreshd.daemon.alerts import AlertEvent
from tvmaniac_refreshd.daemon.decisions import Condition
from tvmaniac_refreshd.daemon.job_process import Finished
from tvmaniac_refreshd.daemon.job_schedule import JobPlan
from tvmaniac_refreshd.daemon.jobs import (
    JobEngine,
    JobResult,
    classify,
    next_regular,
    running_jobs,
)
from tvmaniac_refreshd.storage.job_state import JobStates
from tvmaniac_refreshd.storage.locks import token_in_use

BASE = '[accounts.default]\nprovider = "trakt"\nclient_id = "cid"\n'


def test_a_job_section_with_its_defaults() -> None:
    config = parse_config(BASE + '[jobs.sync]\ncommand = ["my-sync", "-q"]\nevery = "6h"\n')
    job = config.jobs["sync"]
    assert job.command == ("my-sync", "-q")
    assert (job.every, job.at, job.timeout) == (6 * 3600, None, 15 * 60)
    assert job.min_valid == job.timeout  # the default: the job's timeout
    assert (job.network, job.env, job.account) == ("connected", "ACCESS_TOKEN", None)
    assert job.schedule == "every 6h"
    at = parse_config(BASE + '[jobs.n]\ncommand = ["x"]\nat = "03:30"\nmin_valid = "1h"\n')
    assert at.jobs["n"].at == DailyAt(3, 30)
    assert at.jobs["n"].min_valid == 3600


def test_every_problem_of_every_job_is_reported_at_once() -> None:
    text = BASE + (
        '[jobs.a]\ncommand = "sh string"\nnetwork = "wifi"\naccount = "nobody"\nenv = "1X"\n'
        '[jobs.b]\ncommand = ["x"]\nevery = "1h"\nat = "3pm"\ntimeout = "0s"\ncolour = 1\n'
        '[jobs."bad name"]\ncommand = ["x"]\nevery = "1h"\n'
    )
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    message = str(caught.value)
    for key in (
        "jobs.a.command",
        "jobs.a.network",
        "jobs.a.account",
        "jobs.a.env",
        "jobs.a.every",  # neither every nor at
        "jobs.b.at",
        "jobs.b.timeout",
        "jobs.b.colour",
        "jobs.bad name",
    ):
        assert key in message, key


def test_a_job_must_name_its_account_when_several_could_be_meant() -> None:
    # Neither a default_account, nor one account, nor one named "default".
    two = (
        BASE.replace("default", "main") + '[accounts.other]\nprovider = "trakt"\nclient_id = "c2"\n'
    )
    with pytest.raises(ConfigError, match=r"jobs\.s\.account: several accounts"):
        parse_config(two + '[jobs.s]\ncommand = ["x"]\nevery = "1h"\n')
    named = parse_config(two + '[jobs.s]\ncommand = ["x"]\nevery = "1h"\naccount = "other"\n')
    assert named.jobs["s"].account == "other"


@pytest.mark.parametrize(
    ("finished", "expected"),
    [
        (Finished(0), (JobResult.DONE, 0)),
        (Finished(75), (JobResult.RETRY, 75)),
        (Finished(77), (JobResult.LOGIN_NEEDED, 77)),
        (Finished(3), (JobResult.FAILED, 3)),
        (Finished(-9), (JobResult.FAILED, 137)),
        (Finished(-15, timed_out=True), (JobResult.TIMED_OUT, 1)),
    ],
)
def test_the_exit_code_decides_what_follows(
    finished: Finished, expected: tuple[JobResult, int]
) -> None:
    assert classify(finished) == expected


def test_next_regular_run() -> None:
    every = Job("j", ("x",), None, every=600)
    assert next_regular(every, 1000.0) == 1600.0
    daily = Job("j", ("x",), None, at=DailyAt(3, 30))
    after = next_regular(daily, 1_800_000_000.0)
    assert 0 < after - 1_800_000_000.0 <= 86400 + 3600  # a DST day may be 25 h long


class Network:
    def __init__(self) -> None:
        self.online = True
        self.listeners: list[Callable[[bool], object]] = []

    def subscribe(self, listener: Callable[[bool], object]) -> Callable[[], None]:
        self.listeners.append(listener)
        return lambda: None

    def set(self, online: bool) -> None:
        self.online = online
        for listener in self.listeners:
            listener(online)


class Jobs:
    """A World (test_daemon's) with a job engine and plan on its planner and clock."""

    def __init__(self, tmp_path: Path, code: int = 0, **job: object) -> None:
        self.world = World(tmp_path)
        self.out = tmp_path / "job.out"
        script = f'printf %s "$TOKEN" > {self.out}; exit {code}'
        settings: dict[str, object] = {"every": 3600, "timeout": 60, "env": "TOKEN", **job}
        self.job = Job("sync", ("sh", "-c", script), None, **settings)  # type: ignore[arg-type]
        self.network = Network()
        self.states = JobStates(tmp_path / "jobs")
        self.engine = JobEngine(
            refresher=self.world.refresher,
            states=self.states,
            alerter=self.world.alerter,  # type: ignore[arg-type]
            clock=self.world.clock,
            share=lambda: 0.0,
            environ={"PATH": "/usr/bin:/bin"},
            network=self.network,
        )
        config = Config(source="t", accounts={"default": ACCOUNT}, jobs={"sync": self.job})
        self.changes = 0
        self.plan = JobPlan(
            config,
            planner=self.world.planner,
            engine=self.engine,
            clock=self.world.clock,
            on_change=self.changed,
        )

    def changed(self) -> None:
        self.changes += 1

    def planned(self) -> float | None:
        job = self.world.planner.jobs.get("job:sync")
        return None if job is None else job[0]


def test_a_run_gets_the_token_in_its_environment(tmp_path: Path) -> None:
    jobs = Jobs(tmp_path)
    outcome = jobs.engine.run(jobs.job, ACCOUNT)
    assert (outcome.result, outcome.code) == (JobResult.DONE, 0)
    assert jobs.out.read_text() == "access-0000-xxxxxxxx"
    assert jobs.world.trakt.spent == []  # a week-long token outlives a one-minute job
    record = jobs.states.load("sync")
    assert (record.last_result, record.last_code, record.attempts) == ("done", 0, 0)
    assert record.next_run_at == int(jobs.world.clock()) + 3600


def test_a_state_directory_made_unsafe_does_not_break_the_run(tmp_path: Path) -> None:
    """JobStates.update raises UnsafeLocation, which is no OSError: the run's result stands."""
    jobs = Jobs(tmp_path)
    (tmp_path / "jobs").mkdir(mode=0o700)
    (tmp_path / "jobs").chmod(0o777)  # writable by others: refused
    outcome = jobs.engine.run(jobs.job, ACCOUNT)
    assert (outcome.result, outcome.code) == (JobResult.DONE, 0)


def test_a_token_whose_refresh_would_fall_due_during_the_run_is_refreshed_first(
    tmp_path: Path,
) -> None:
    jobs = Jobs(tmp_path)
    jobs.world.advance_to(jobs.world.due() - 30)  # due in 30 s; the job may take 60 s
    assert jobs.engine.run(jobs.job, ACCOUNT).result is JobResult.DONE
    assert jobs.world.trakt.spent == ["refresh-0000-xxxxxxxx"]
    assert jobs.out.read_text() == "access-0001-xxxxxxxx"


def test_exit_75_backs_off_by_the_retry_policy(tmp_path: Path) -> None:
    jobs = Jobs(tmp_path, code=75)
    first = jobs.engine.run(jobs.job, ACCOUNT)
    second = jobs.engine.run(jobs.job, ACCOUNT)
    now = jobs.world.clock()
    assert (first.result, first.code) == (JobResult.RETRY, 75)
    # share 0: half of each step of 60 s, 120 s (RetryPolicy's defaults).
    assert (first.next_at, second.next_at) == (now + 30, now + 60)
    assert jobs.states.load("sync").attempts == 2
    assert jobs.world.alerter.events == []  # not failing for long yet


def test_exit_77_fires_the_accounts_reauth_alert(tmp_path: Path) -> None:
    jobs = Jobs(tmp_path, code=77)
    outcome = jobs.engine.run(jobs.job, ACCOUNT)
    assert (outcome.result, outcome.code) == (JobResult.LOGIN_NEEDED, 77)
    [(account, event, message)] = jobs.world.alerter.events
    assert (account, event) == ("default", AlertEvent.REAUTH_REQUIRED)
    assert "sync" in message


def test_errors_are_alerted_after_failing_for(tmp_path: Path) -> None:
    jobs = Jobs(tmp_path, code=3)
    assert jobs.engine.run(jobs.job, ACCOUNT).code == 3
    assert jobs.world.alerter.events == []
    jobs.world.clock.advance(ACCOUNT.alerts.failing_for)
    jobs.engine.run(jobs.job, ACCOUNT)
    [(_, event, message)] = jobs.world.alerter.events
    assert event is AlertEvent.FAILING
    assert "exit 3" in message


def test_a_timeout_is_a_failure(tmp_path: Path) -> None:
    jobs = Jobs(tmp_path)
    stuck = Job("stuck", ("sleep", "600"), None, every=3600, timeout=1, min_valid_setting=60)
    outcome = jobs.engine.run(stuck, ACCOUNT)
    assert (outcome.result, outcome.code) == (JobResult.TIMED_OUT, 1)


def test_a_missing_command_is_127(tmp_path: Path) -> None:
    jobs = Jobs(tmp_path)
    missing = Job("m", ("/nonexistent/cmd",), None, every=3600, timeout=60)
    assert jobs.engine.run(missing, ACCOUNT).code == 127


def test_offline_the_job_waits_and_runs_when_the_link_returns(tmp_path: Path) -> None:
    jobs = Jobs(tmp_path)
    jobs.network.online = False
    jobs.plan.plan_all()
    jobs.world.planner.run_due(jobs.world.clock())
    assert not jobs.out.exists()  # deferred: not run
    assert jobs.planned() is not None  # the first plan, already spent
    jobs.world.planner.jobs.clear()
    assert jobs.states.load("sync").last_result == "waiting_for_network"
    assert "job sync: waiting for the network" in jobs.plan.status_line()
    jobs.network.set(True)
    assert jobs.planned() == jobs.world.clock()  # at once
    jobs.world.planner.run_due(jobs.world.clock())
    assert jobs.out.read_text() == "access-0000-xxxxxxxx"
    assert jobs.states.load("sync").last_result == "done"


def test_network_any_runs_offline(tmp_path: Path) -> None:
    jobs = Jobs(tmp_path, network="any")
    jobs.network.online = False
    assert jobs.engine.run(jobs.job, ACCOUNT).result is JobResult.DONE


def test_the_plan_runs_a_new_job_at_once_then_every_period(tmp_path: Path) -> None:
    jobs = Jobs(tmp_path)
    jobs.plan.plan_all()
    assert jobs.planned() == jobs.world.clock()
    jobs.world.planner.run_due(jobs.world.clock())
    assert jobs.planned() == jobs.world.clock() + 3600
    assert jobs.changes == 1
    assert jobs.plan.status_line().startswith("job sync: next run at ")
    # A restarted daemon keeps the plan the record holds.
    again = Jobs(tmp_path)
    again.plan.plan_all()
    assert again.planned() == jobs.world.clock() + 3600


def test_a_refresh_due_while_a_job_holds_the_token_waits_for_its_end(tmp_path: Path) -> None:
    """The in-use lock, not a window: held shared (by a job of any process), the daemon's due
    refresh is deferred (no failure, no backoff) and runs when the watcher sees the job end."""
    world = World(tmp_path)
    waiting: list[Callable[[], object]] = []
    world.daemon.after_jobs = lambda refresher, then: waiting.append(then)
    world.daemon.jobs_using = lambda account: ["sync"]
    world.daemon.plan_all()
    with token_in_use(tmp_path / "locks", "default", wait=1):
        world.advance_to(world.due())
        assert world.trakt.spent == []  # not while the job uses the access token
        watch = world.daemon.watches["default"]
        assert (watch.condition, watch.attempts) == (Condition.WAITING_FOR_JOB, 0)
        assert "default: refresh waiting for job sync" in world.daemon.status_line()
        assert world.states.load("default").consecutive_failures == 0
        assert len(waiting) == 1
    waiting[0]()  # the watcher: the job ended
    world.planner.run_due(world.clock())
    assert world.trakt.spent == ["refresh-0000-xxxxxxxx"]
    assert world.daemon.watches["default"].condition is Condition.SCHEDULED


def test_a_forced_refresh_waits_for_the_job_then_gives_up_with_75(tmp_path: Path) -> None:
    world = World(tmp_path)
    in_use = token_in_use(tmp_path / "locks", "default", wait=1)
    with in_use, pytest.raises(TokenInUse, match="job is running with account 'default'") as caught:
        world.refresher(ACCOUNT).ensure_fresh(force=True, job_wait=0.05)
    assert caught.value.exit_code == 75
    assert world.trakt.spent == []
    assert world.states.load("default").consecutive_failures == 0
    assert world.refresher(ACCOUNT).ensure_fresh(force=True).refreshed  # the job has ended


def test_a_job_holds_the_in_use_lock_for_its_whole_run(tmp_path: Path) -> None:
    """What the job's command sees: a refresh (an exclusive flock) cannot have the lock."""
    jobs = Jobs(tmp_path)
    lock = tmp_path / "locks" / "in-use" / "default.lock"
    lock.parent.mkdir(mode=0o700, parents=True)  # so that only a holder can make it fail
    # flock(1) exits 99 (-E) only for a lock held by another: not for a file it cannot open.
    probe = f"flock -n -E 99 -x {lock} true; echo $? > {jobs.out}"
    own = Job("probe", ("sh", "-c", probe), None, every=3600, timeout=60)
    assert jobs.engine.run(own, ACCOUNT).result is JobResult.DONE
    assert jobs.out.read_text().strip() == "99"
    assert jobs.states.load("probe").running_pid is None  # cleared at the end
    with token_in_use(tmp_path / "locks", "default", wait=1):  # shared: jobs run side by side
        assert jobs.engine.run(jobs.job, ACCOUNT).result is JobResult.DONE


def test_running_jobs_are_named_by_their_records(tmp_path: Path) -> None:
    jobs = Jobs(tmp_path)
    config = Config(source="t", accounts={"default": ACCOUNT}, jobs={"sync": jobs.job})
    assert running_jobs(config, jobs.states, "default") == []
    jobs.states.update("sync", running_pid=os.getpid())
    assert running_jobs(config, jobs.states, "default") == ["sync"]
    assert running_jobs(config, jobs.states, "other") == []


def test_status_line_carries_the_jobs(tmp_path: Path) -> None:
    world = World(tmp_path)
    world.daemon.plan_all()
    world.daemon.jobs_status = lambda: "job sync: next run at 03:30 UTC"
    assert world.daemon.status_line().endswith("; job sync: next run at 03:30 UTC")


def test_the_job_process_has_its_own_group(tmp_path: Path) -> None:
    """So the timeout's killpg reaches what it started, and never the daemon itself."""
    jobs = Jobs(tmp_path)
    script = f"ps -o pgid= -p $$ > {tmp_path / 'pgid'}"
    own = Job("g", ("sh", "-c", script), None, every=3600, timeout=60)
    jobs.engine.run(own, ACCOUNT)

    assert int((tmp_path / "pgid").read_text()) != os.getpgid(0)


def test_jobs_run_on_a_pool_of_their_own() -> None:
    """A long job never takes a worker a refresh needs."""
    from tvmaniac_refreshd.daemon.scheduler import Scheduler  # noqa: PLC0415

    scheduler = Scheduler(max_workers=1, job_workers=1)
    release = threading.Event()
    refreshed = threading.Event()
    started = threading.Event()

    def long_job() -> None:
        started.set()
        release.wait(60)

    scheduler.at("job:sync", 4_000_000_000.0, lambda: None)
    scheduler.at(JOB, 4_000_000_000.0, lambda: None)
    jobs = {job.id: job.executor for job in scheduler._scheduler.get_jobs()}
    assert jobs == {"job:sync": "jobs", JOB: "default"}
    # A job that blocks its worker, then a refresh: the refresh still runs.
    scheduler.at("job:sync", 0.0, long_job)
    scheduler.at(JOB, 0.0, refreshed.set)
    scheduler.start()
    try:
        assert started.wait(60)  # the job runs on its pool
        assert refreshed.wait(60)  # and the refresh is not kept waiting
    finally:
        release.set()
        scheduler.shutdown()


def test_a_reload_that_adds_jobs_gives_each_a_worker() -> None:
    """The jobs' pool was sized at start: a job added by a reload waited for a running one."""
    from tvmaniac_refreshd.daemon.scheduler import Scheduler  # noqa: PLC0415

    scheduler = Scheduler(max_workers=1, job_workers=1)
    release = threading.Event()
    first, second = threading.Event(), threading.Event()

    def long_job() -> None:
        first.set()
        release.wait(60)

    scheduler.at("job:a", 0.0, long_job)
    scheduler.start()
    try:
        assert first.wait(60)
        scheduler.resize_jobs(2)  # what a reload with a second job does
        scheduler.at("job:b", 0.0, second.set)
        assert second.wait(60)  # not kept waiting by job a
    finally:
        release.set()
        scheduler.shutdown()


def test_a_reload_while_a_job_runs_does_not_plan_it_again(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    jobs = Jobs(tmp_path)
    started = tmp_path / "started"
    script = (
        f"touch {started}; i=0; "
        f"while [ ! -e {gate} ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done"
    )
    slow = Job("sync", ("sh", "-c", script), None, every=3600, timeout=60)
    config = Config(source="t", accounts={"default": ACCOUNT}, jobs={"sync": slow})
    jobs.plan.reload(config)
    jobs.world.planner.jobs.clear()
    runner = threading.Thread(target=jobs.plan.run, args=("sync",))
    runner.start()
    try:
        wait_until(started.exists, timeout=60, what="the job to start")
        jobs.plan.reload(config)
        assert jobs.planned() is None  # it plans its own next run when it ends
    finally:
        gate.touch()
        runner.join(60)
    assert jobs.planned() == jobs.world.clock() + 3600


def test_a_job_run_elsewhere_takes_the_record_its_process_wrote(tmp_path: Path) -> None:
    """The daemon in its unit: `job run` in a transient unit records the run; the daemon's
    plan follows that record (a 75's backoff, its result)."""
    jobs = Jobs(tmp_path)

    def launch() -> int:  # what `job run sync` in its unit leaves behind
        jobs.states.update("sync", last_run_at=1, last_result="retry", next_run_at=12345)
        return 75

    outcome = jobs.engine.run_elsewhere(jobs.job, ACCOUNT, launch)
    assert (outcome.result, outcome.code, outcome.next_at) == (JobResult.RETRY, 75, 12345.0)
    # systemd-run failed before anything ran: a failure the daemon records itself.
    failed = jobs.engine.run_elsewhere(jobs.job, ACCOUNT, lambda: 1)
    assert (failed.result, failed.code) == (JobResult.FAILED, 1)
    assert jobs.states.load("sync").attempts == 1


def test_the_transient_unit_carries_no_token() -> None:
    from tvmaniac_refreshd.daemon.job_unit import unit_argv  # noqa: PLC0415

    job = Job("sync", ("my-sync",), None, every=3600, timeout=60)
    argv = unit_argv(job, "u.service", ["/py", "-m", "tvmaniac_refreshd"], {"A": "secret"})
    assert argv[-3:] == ["job", "run", "sync"]
    assert "--wait" in argv
    assert "--property=RuntimeMaxSec=180" in argv
    assert not any("secret" in word or "ACCESS_TOKEN" in word for word in argv)
