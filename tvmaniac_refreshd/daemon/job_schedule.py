"""The daemon's plan for the jobs: each planned on the daemon's scheduler at its next run, and
the ones that waited for the network run as soon as it returns.

The plan is rebuilt from each job's record at start and after a reload: a run missed while the
daemon was down happens at once (as systemd's Persistent=true timers do), and a job that never
ran runs at start, as a periodic WorkManager job does.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from tvmaniac_refreshd.config.jobs import Job
from tvmaniac_refreshd.config.settings import Config
from tvmaniac_refreshd.core.errors import RefreshdError
from tvmaniac_refreshd.core.logs import get_logger
from tvmaniac_refreshd.daemon.decisions import clock_time
from tvmaniac_refreshd.daemon.job_process import kill_running_jobs
from tvmaniac_refreshd.daemon.job_unit import stop_running_units
from tvmaniac_refreshd.daemon.jobs import JobEngine, JobResult, next_regular
from tvmaniac_refreshd.daemon.scheduler import Planner


def job_id(name: str) -> str:
    return f"job:{name}"


class JobPlan:
    """Keeps every configured job planned; the scheduler calls ``run``."""

    def __init__(
        self,
        config: Config,
        *,
        planner: Planner,
        engine: JobEngine,
        clock: Callable[[], float],
        on_change: Callable[[], object] = lambda: None,
        launcher: Callable[[Job], int] | None = None,
    ) -> None:
        """``launcher``: runs a job in another process and returns its exit status (a
        transient unit, job_unit.py); None runs it in this one."""
        self.config = config
        self._launcher = launcher
        self._on_change = on_change
        self.next_at: dict[str, float] = {}  # what is planned, for STATUS=
        self.results: dict[str, JobResult] = {}  # the last run's, in this process
        self._running: set[str] = set()  # each plans its own next run when it ends
        self._planner = planner
        self.engine = engine
        self._clock = clock
        self._log = get_logger()
        self._cancel_watch = engine.network.subscribe(self._network_changed)

    def plan_all(self) -> None:
        now = self._clock()
        for name in self.config.jobs:
            if name in self._running:
                continue  # a reload while it runs: planning it now would run it twice at once
            record = self.engine.states.load(name)
            when = now
            if record.next_run_at is not None:
                # A shorter period in the config since the record was written counts at once.
                when = min(float(record.next_run_at), next_regular(self.config.jobs[name], now))
            if record.last_result == JobResult.WAITING_FOR_NETWORK:
                when = now  # it asks the network again, and waits again if need be
            self._planner.at(job_id(name), max(when, now), functools.partial(self.run, name))
            self.next_at[name] = max(when, now)
            self._log.info("job.planned", job=name, next_run_at=int(max(when, now)))

    def run(self, name: str) -> None:
        """Run job ``name`` and plan its next run; never raise (the scheduler's thread)."""
        job = self.config.jobs.get(name)
        if job is None:  # removed by a reload
            return
        self._running.add(name)
        try:
            account = self.config.select(job.account)
            if self._launcher is None:
                outcome = self.engine.run(job, account)
            else:
                outcome = self.engine.run_elsewhere(
                    job, account, functools.partial(self._launcher, job)
                )
        except RefreshdError as exc:
            self._log.error("job.not_run", job=name, error=str(exc))
            return
        except Exception as exc:  # a bug must not stop the other jobs
            self._log.exception("job.unexpected_error", job=name, error=repr(exc))
            return
        finally:
            self._running.discard(name)
        self.next_at.pop(name, None)
        if outcome.next_at is not None:
            self._planner.at(job_id(name), outcome.next_at, functools.partial(self.run, name))
            self.next_at[name] = outcome.next_at
        self.results[name] = outcome.result
        self._on_change()

    def _network_changed(self, online: bool) -> None:
        if not online:
            return
        now = self._clock()
        for name in self.config.jobs:
            if self.engine.states.load(name).last_result == JobResult.WAITING_FOR_NETWORK:
                self._log.info("job.network_returned", job=name)
                self._planner.at(job_id(name), now, functools.partial(self.run, name))

    def status_line(self) -> str:
        """The jobs' part of STATUS=: each job's next run, or that it waits for the network."""
        now = self._clock()
        parts = []
        for name in sorted(self.config.jobs):
            result = self.results.get(name)
            if result is JobResult.WAITING_FOR_NETWORK:
                parts.append(f"job {name}: waiting for the network")
            elif name in self.next_at:
                text = f"job {name}: next run at {clock_time(self.next_at[name], now)}"
                parts.append(text + (f" (last: {result})" if result else ""))
        return "; ".join(parts)

    def reload(self, config: Config) -> None:
        for name in set(self.config.jobs) - set(config.jobs):
            self._planner.cancel(job_id(name))
        self.config = config
        self.plan_all()

    def close(self) -> None:
        """Stop: no more network events, and the running jobs killed (their timeouts may be
        far off; a stop must not wait for them)."""
        self._cancel_watch()
        kill_running_jobs()
        stop_running_units()
