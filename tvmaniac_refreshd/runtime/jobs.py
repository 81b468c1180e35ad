"""The job engine of one process, as `job run` (a timer's oneshot, or by hand) builds it."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

from tvmaniac_refreshd.config.jobs import Job
from tvmaniac_refreshd.core.errors import UsageError
from tvmaniac_refreshd.core.launchd_log import in_background_session
from tvmaniac_refreshd.core.logs import get_logger
from tvmaniac_refreshd.daemon import events
from tvmaniac_refreshd.daemon.alerts import Alerter
from tvmaniac_refreshd.daemon.hook_sandbox import current_unit
from tvmaniac_refreshd.daemon.job_unit import arm_retry, disarm_retry, in_job_unit
from tvmaniac_refreshd.daemon.jobs import JobEngine, JobResult, JobRun, next_regular
from tvmaniac_refreshd.daemon.pass_alerts import CLOSE_TIMEOUT, StateReminders
from tvmaniac_refreshd.runtime.root import Runtime


def plan_retry(runtime: Runtime, job: Job, outcome: JobRun) -> float | None:
    """Timer mode: arm the retry of a run that asked for one (75, no token for now, offline);
    disarm a pending one after any other outcome. Return the delay armed, if any.

    Only in the job's own oneshot (a `job run` by hand retries nothing): the daemon plans its
    own retries, and the regular timer covers a retry that would come later than it.
    """
    if not in_job_unit(runtime.environ, job.name):
        return None
    now = runtime.clock()
    if outcome.result is JobResult.WAITING_FOR_NETWORK:
        # No event reaches a oneshot when the link returns: look again at the backoff's cap
        # (four times an hour by default), each look waiting --wait-for-network for it.
        account = runtime.config.select(job.account)
        share = random.random()  # jitter, not cryptography  # noqa: S311
        delay: float | None = account.retry.maximum * (0.5 + share / 2)
    elif outcome.result is JobResult.RETRY and outcome.next_at is not None:
        delay = outcome.next_at - now
        if outcome.next_at >= next_regular(job, now) - 1:
            delay = None  # the regular firing comes first
    else:
        delay = None
    if delay is None:
        disarm_retry(job.name)
        return None
    return delay if arm_retry(job.name, delay) else None


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
def one_shot_engine(
    runtime: Runtime, job: Job, *, wait_for_network: float = 0
) -> Iterator[JobEngine]:
    """An engine for one run of ``job`` in this process; its alerts are waited for at the end.

    Reminders live in the state files, as for a timer's `refresh --all`: each run is a process.
    A ``network = "connected"`` job asks the event sources (issue 29) whether the machine is
    online, as the daemon does, waiting up to ``wait_for_network`` seconds for it (a user
    timer cannot be ordered after network-online.target); without a source it counts as online.
    """
    sources = (
        events.start(runtime.environ, on_resume=lambda: None)
        if job.network == "connected"
        else None
    )
    if sources is not None and wait_for_network > 0 and not sources.network.online:
        get_logger(job=job.name).info(
            "job.network_wait", source=sources.network.source, timeout_s=wait_for_network
        )
        sources.network.wait_online(wait_for_network)
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
