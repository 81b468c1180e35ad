"""APScheduler 3.x behind a small interface: the only module that imports it.

Jobs live in memory only; the plan is rebuilt from the keyring, never persisted. The job
defaults matter: APScheduler's own ``misfire_grace_time`` of one second silently drops a refresh
that fires late after a suspend, so it is disabled, and late runs are coalesced into one.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any, Protocol

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    JobEvent,
)
from apscheduler.executors.debug import DebugExecutor
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from tvmaniac_refreshd.core.logs import get_logger

# max_instances=2, not 1: a refresh job plans its own next run while it is still running, and
# if that run is already due APScheduler would refuse it ("maximum number of running instances
# reached") and, for a one-shot date job, drop it for good. The daemon's per-account lock
# serializes the two instances instead.
JOB_DEFAULTS = {"misfire_grace_time": None, "coalesce": True, "max_instances": 2}
# Background jobs ([jobs.NAME], ids "job:NAME") run for minutes on a pool of their own, so that
# they never take the workers the refreshes need.
JOBS_EXECUTOR = "jobs"
JOB_PREFIX = "job:"


class Planner(Protocol):
    """What the daemon needs from a scheduler; tests provide a recording fake."""

    def at(self, job_id: str, when: float, func: Callable[[], object]) -> None: ...

    def every(self, job_id: str, seconds: float, func: Callable[[], object]) -> None: ...

    def cancel(self, job_id: str) -> None: ...

    def planned(self, job_id: str) -> float | None: ...


def _utc(timestamp: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(timestamp, tz=dt.UTC)


class Scheduler:
    """A background scheduler whose jobs run on a bounded pool of worker threads."""

    def __init__(
        self,
        *,
        max_workers: int,
        executor: Any = None,  # noqa: ANN401
        job_workers: int = 2,
    ) -> None:
        # APScheduler logs through stdlib logging, which would bypass our format and redaction;
        # what matters of it reaches the listener below and is logged by us.
        apscheduler_log = logging.getLogger("apscheduler")
        apscheduler_log.addHandler(logging.NullHandler())
        apscheduler_log.propagate = False
        self._log = get_logger()
        # Every periodic job counts its periods from this one instant, so that the ones that
        # fall due together (the 5-hour re-check and the hourly ping) do so to the microsecond
        # and cost the idle daemon one wake-up, not two a few microseconds apart.
        self._epoch = dt.datetime.now(tz=dt.UTC)
        self._jobs_executor = JOBS_EXECUTOR
        self._job_workers = job_workers
        self._scheduler = BackgroundScheduler(
            timezone=dt.UTC,
            job_defaults=JOB_DEFAULTS,
            executors={
                "default": executor or ThreadPoolExecutor(max_workers=max_workers),
                JOBS_EXECUTOR: ThreadPoolExecutor(max_workers=job_workers),
                # On the scheduler's own thread: for a job that must not wait for a worker and
                # costs no worker's wake-up (the watchdog ping), never for one that may block.
                "inline": DebugExecutor(),
            },
        )
        self._scheduler.add_listener(
            self._on_trouble, EVENT_JOB_ERROR | EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES
        )

    def _on_trouble(self, event: JobEvent) -> None:
        if event.code == EVENT_JOB_MISSED:
            self._log.warning("scheduler.job_missed", job=event.job_id)
        elif event.code == EVENT_JOB_MAX_INSTANCES:
            self._log.warning("scheduler.job_skipped", job=event.job_id, reason="still running")
        else:
            error = getattr(event, "exception", None)
            self._log.error("scheduler.job_failed", job=event.job_id, error=repr(error))

    def start(self) -> None:
        self._scheduler.start()

    def shutdown(self) -> None:
        """Stop starting jobs; running ones are left to finish (or be abandoned at exit)."""
        if self._scheduler.running:
            # APScheduler marks itself stopped before taking its job-store lock, and a pass
            # over the jobs that is under way then fails to remove a finished one-shot job (an
            # exception in its thread). Pausing first and waiting for that lock avoids it.
            self._scheduler.pause()
            self._scheduler.get_jobs()
            self._scheduler.shutdown(wait=False)

    def at(self, job_id: str, when: float, func: Callable[[], object]) -> None:
        """Run ``func`` once at unix time ``when`` (at once if that has passed)."""
        self._scheduler.add_job(
            func,
            DateTrigger(run_date=_utc(when)),
            id=job_id,
            replace_existing=True,
            executor=self._jobs_executor if job_id.startswith(JOB_PREFIX) else "default",
        )

    def resize_jobs(self, workers: int) -> None:
        """Give the jobs' pool at least ``workers`` threads (a reload added jobs).

        APScheduler cannot resize a pool: a new one takes the planned jobs, and the old one is
        let go once its running jobs end (they are not waited for, nor cut short).
        """
        if workers <= self._job_workers:
            return
        old, alias = self._jobs_executor, f"{JOBS_EXECUTOR}-{workers}"
        self._scheduler.add_executor(ThreadPoolExecutor(max_workers=workers), alias)
        self._jobs_executor, self._job_workers = alias, workers
        for job in self._scheduler.get_jobs():
            if job.executor == old:
                job.modify(executor=alias)
        self._scheduler.remove_executor(old, shutdown=False)
        self._log.info("scheduler.jobs_pool_resized", workers=workers)

    def every(
        self, job_id: str, seconds: float, func: Callable[[], object], *, inline: bool = False
    ) -> None:
        """Run ``func`` every ``seconds``, starting one period from now; ``inline``: on the
        scheduler's thread (a quick job that never blocks), not a worker's."""
        self._scheduler.add_job(
            func,
            IntervalTrigger(seconds=seconds, start_date=self._epoch),
            id=job_id,
            replace_existing=True,
            executor="inline" if inline else "default",
        )

    def cancel(self, job_id: str) -> None:
        job = self._scheduler.get_job(job_id)
        if job is not None:
            job.remove()

    def planned(self, job_id: str) -> float | None:
        """When ``job_id`` runs next (unix time), or None if it is not planned.

        APScheduler submits a due job and removes (or moves) it under one lock, which this
        read takes too: a job seen here at its old time has not fired yet, so it still will.
        """
        job = self._scheduler.get_job(job_id)
        if job is None or job.next_run_time is None:
            return None
        return float(job.next_run_time.timestamp())
