"""The job engine of one process, as `job run` (a timer's oneshot, or by hand) builds it."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

from tvmaniac_refreshd.config.jobs import Job
from tvmaniac_refreshd.core.errors import UsageError
from tvmaniac_refreshd.core.launchd_log import in_background_session
from tvmaniac_refreshd.daemon import events
from tvmaniac_refreshd.daemon.alerts import Alerter
from tvmaniac_refreshd.daemon.hook_sandbox import current_unit
from tvmaniac_refreshd.daemon.jobs import JobEngine
from tvmaniac_refreshd.daemon.pass_alerts import CLOSE_TIMEOUT, StateReminders
from tvmaniac_refreshd.runtime.root import Runtime


def find_job(runtime: Runtime, name: str) -> Job:
    """Return the job ``name`` of the config.

    Raises:
        UsageError: there is no such job.
    """
    jobs = runtime.config.jobs
    if name not in jobs:
        known = ", ".join(sorted(jobs)) or "none"
        raise UsageError(f"no job named {name!r} in {runtime.config.source} (configured: {known})")
    return jobs[name]


@contextlib.contextmanager
def one_shot_engine(runtime: Runtime, job: Job) -> Iterator[JobEngine]:
    """An engine for one run of ``job`` in this process; its alerts are waited for at the end.

    Reminders live in the state files, as for a timer's `refresh --all`: each run is a process.
    A ``network = "connected"`` job asks the event sources (issue 29) whether the machine is
    online, as the daemon does; without a source it counts as online.
    """
    sources = (
        events.start(runtime.environ, on_resume=lambda: None)
        if job.network == "connected"
        else None
    )
    alerter = Alerter(
        desktop=not in_background_session(runtime.environ),
        reminders=StateReminders(runtime.states),
        unit=current_unit(runtime.environ),
    )
    engine = JobEngine(
        refresher=runtime.refresher,
        states=runtime.job_states,
        alerter=alerter,
        clock=runtime.clock,
        share=random.random,  # jitter, not cryptography
        environ=runtime.environ,
        network=None if sources is None else sources.network,
    )
    try:
        yield engine
    finally:
        alerter.close(CLOSE_TIMEOUT)
        if sources is not None:
            sources.close()
