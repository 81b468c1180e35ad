"""The rules of one job run, the same for `job run` and the daemon: a token that outlives the
run, the network constraint, what the exit code leads to, the alerts, the record for `job list`.

Exit codes follow sysexits as the CLI's own do: 0 done, 75 (EX_TEMPFAIL) try again with
backoff, 77 (EX_NOPERM) a login is needed, anything else an error.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from tvmaniac_refreshd.config.jobs import Job
from tvmaniac_refreshd.config.settings import Account, Config
from tvmaniac_refreshd.core.durations import format_duration
from tvmaniac_refreshd.core.errors import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_REAUTH,
    EXIT_TEMPORARY,
    NotLoggedIn,
    RefreshdError,
    SessionRejected,
    TransientError,
    UnsafeLocation,
    UsageError,
)
from tvmaniac_refreshd.core.logs import get_logger
from tvmaniac_refreshd.core.policy import refresh_due_at, retry_delay
from tvmaniac_refreshd.daemon.alerts import Alerter, AlertEvent
from tvmaniac_refreshd.daemon.job_process import Finished, run_command
from tvmaniac_refreshd.daemon.refresher import Refresher
from tvmaniac_refreshd.providers.factory import wording_for
from tvmaniac_refreshd.storage.job_state import JobRecord, JobStates


class JobResult(StrEnum):
    """How a run ended; the value is what `job list`, `status` and the journal show."""

    DONE = "done"
    RETRY = "retry"  # the command exited 75, or no token could be had for a passing reason
    LOGIN_NEEDED = "login_needed"  # the command exited 77, or the account needs `login`
    FAILED = "failed"  # any other exit code
    TIMED_OUT = "timed_out"
    WAITING_FOR_NETWORK = "waiting_for_network"  # deferred: not run, not a failure


class Online(Protocol):
    """What the job needs to know of the network (issue 29's NetworkState has this shape)."""

    @property
    def online(self) -> bool: ...

    def subscribe(self, listener: Callable[[bool], object]) -> Callable[[], None]: ...


class AlwaysOnline:
    """No event source: the network counts as always there, and nothing is ever deferred."""

    online = True

    def subscribe(self, listener: Callable[[bool], object]) -> Callable[[], None]:
        return lambda: None


@dataclass(frozen=True)
class JobRun:
    """One run's outcome: the result, the exit code `job run` returns, when to run next."""

    result: JobResult
    code: int
    next_at: float | None


def next_regular(job: Job, after: float) -> float:
    """Return the job's next regular run after ``after``: one period on, or the next ``at``."""
    if job.at is None:
        return after + float(job.every or 0)
    moment = dt.datetime.fromtimestamp(after).astimezone()
    when = moment.replace(hour=job.at.hour, minute=job.at.minute, second=0, microsecond=0)
    if when.timestamp() <= after:
        when = (when + dt.timedelta(days=1)).replace(hour=job.at.hour, minute=job.at.minute)
    return when.timestamp()


def token_window(job: Job, account: Account, refresher: Refresher, now: float) -> int:
    """Return the min_valid to ask the refresher for, so the token serves the whole run.

    Beyond the job's own ``min_valid``: the token's refresh must not fall due before the
    timeout, or the daemon (or a timer) would spend the refresh token while the job still uses
    the access token it replaces. Capped at half the lifetime, so that a job whose timeout is
    longer than a token lives does not refresh on every run.

    Raises:
        UsageError: ``min_valid`` is longer than the provider's tokens live (exit 2).
    """
    tokens = refresher.load().tokens
    lifetime = tokens.expires_in
    if job.min_valid > lifetime:
        raise UsageError(
            f"job {job.name!r}: min_valid {format_duration(job.min_valid)} cannot be met: the "
            f"provider issues tokens valid for {format_duration(lifetime)}"
        )
    lead = tokens.expires_at - refresh_due_at(tokens, account.refresh, salt=account.name)
    del now  # the lead is a property of the pair; the refresher compares with its own clock
    return max(job.min_valid, min(lead + job.timeout, lifetime // 2))


@contextmanager
def _holding_token(job: Job, account: Account, refresher: Refresher, window: int) -> Iterator[str]:
    """Yield an access token valid for ``window`` seconds, with the account's in-use lock held
    shared for the block: no refresh, in any process, spends the refresh token (replacing this
    access token) until the job ends (storage/locks.py).

    Raises:
        TransientError: a refresh held the lock too long, or the token fell due meanwhile.
        RefreshdError: as ``Refresher.ensure_fresh``.
    """
    refresher.ensure_fresh(min_valid=window)  # before the lock: a refresh needs it exclusively
    with refresher.using():
        document = refresher.load()  # another process may have refreshed meanwhile
        if refresher.due(document, window):
            raise TransientError(
                f"the token of account {account.name!r} fell due while job {job.name!r} "
                "waited to start; it runs again after the refresh",
                account=account.name,
            )
        yield document.tokens.access_token


class JobEngine:
    """Runs jobs by the rules above; the daemon and `job run` each hold one."""

    def __init__(
        self,
        *,
        refresher: Callable[[Account], Refresher],
        states: JobStates,
        alerter: Alerter,
        clock: Callable[[], float],
        share: Callable[[], float],
        environ: Mapping[str, str],
        network: Online | None = None,
    ) -> None:
        self._refresher = refresher
        self.states = states
        self._alerter = alerter
        self._clock = clock
        self._share = share
        self._environ = environ
        self.network: Online = network or AlwaysOnline()

    def run(self, job: Job, account: Account) -> JobRun:
        """Run ``job`` now with ``account``'s token; record and alert; never raise."""
        log = get_logger(job=job.name, account=account.name)
        started = self._clock()
        if job.network == "connected" and not self.network.online:
            log.info("job.waiting_for_network")
            return self._record(job, JobResult.WAITING_FOR_NETWORK, EXIT_TEMPORARY, None, started)
        refresher = self._refresher(account)
        try:
            window = token_window(job, account, refresher, started)
            with _holding_token(job, account, refresher, window) as token:
                self._mark_running(job)
                log.info("job.started", command=job.command[0], timeout_s=job.timeout)
                finished = run_command(job, token, self._environ)
        except SessionRejected as exc:
            if not isinstance(exc, NotLoggedIn):
                self._alert(account, AlertEvent.REAUTH_REQUIRED, str(exc))
            log.warning("job.finished", result=JobResult.LOGIN_NEEDED, error=str(exc))
            return self._record(job, JobResult.LOGIN_NEEDED, EXIT_REAUTH, account, started)
        except TransientError as exc:
            log.warning("job.finished", result=JobResult.RETRY, error=str(exc))
            return self._record(job, JobResult.RETRY, EXIT_TEMPORARY, account, started, exc)
        except RefreshdError as exc:
            log.error("job.finished", result=JobResult.FAILED, error=str(exc))  # noqa: TRY400
            return self._record(job, JobResult.FAILED, exc.exit_code, account, started, exc)
        result, code = classify(finished)
        level = log.info if result is JobResult.DONE else log.warning
        level("job.finished", result=result, exit_code=finished.code)
        if result is JobResult.LOGIN_NEEDED:
            self._alert(
                account,
                AlertEvent.REAUTH_REQUIRED,
                f"job {job.name!r} says the {wording_for(account).name} login is needed "
                f"(exit 77); run `tvmaniac-refreshd login --account {account.name}`",
            )
        return self._record(job, result, code, account, started)

    def run_elsewhere(self, job: Job, account: Account, launch: Callable[[], int]) -> JobRun:
        """Run ``job`` by ``launch``: another process (`job run` in a transient unit, see
        job_unit.py) that applies the rules above and records the run; return that record's
        outcome. Never raise."""
        log = get_logger(job=job.name, account=account.name)
        started = self._clock()
        if job.network == "connected" and not self.network.online:
            log.info("job.waiting_for_network")
            return self._record(job, JobResult.WAITING_FOR_NETWORK, EXIT_TEMPORARY, None, started)
        before = self.states.load(job.name)
        code = launch()
        after = self.states.load(job.name)
        waited = code == EXIT_TEMPORARY and after.last_result == JobResult.WAITING_FOR_NETWORK
        if after == before and not waited:
            # Nothing recorded: the unit never got to run `job run` (systemd-run failed).
            log.error("job.finished", result=JobResult.FAILED, exit_code=code)
            return self._record(job, JobResult.FAILED, code or EXIT_FAILURE, account, started)
        try:
            result = JobResult(after.last_result or JobResult.FAILED)
        except ValueError:
            result = JobResult.FAILED
        next_at = None if after.next_run_at is None else float(after.next_run_at)
        return JobRun(result, code, next_at)

    def _mark_running(self, job: Job) -> None:
        try:
            self.states.update(job.name, running_pid=os.getpid())
        except (OSError, UnsafeLocation) as exc:  # only "waiting for job NAME" lags
            get_logger(job=job.name).warning("job.state_not_written", error=str(exc))

    def _record(
        self,
        job: Job,
        result: JobResult,
        code: int,
        account: Account | None,
        started: float,
        error: object = None,
    ) -> JobRun:
        now = self._clock()
        previous = self.states.load(job.name)
        failing = result in (JobResult.RETRY, JobResult.FAILED, JobResult.TIMED_OUT)
        attempts = previous.attempts + 1 if failing else 0
        failing_since = (previous.failing_since or int(started)) if failing else None
        regular = next_regular(job, now)
        next_at: float | None = regular
        if result is JobResult.WAITING_FOR_NETWORK:
            next_at = None  # runs when the link returns
            attempts, failing_since = previous.attempts, previous.failing_since
        elif result is JobResult.RETRY and account is not None:
            retry_after = error.retry_after if isinstance(error, TransientError) else None
            share = self._share()
            delay = retry_delay(attempts, account.retry, retry_after=retry_after, share=share)
            next_at = min(regular, now + delay)
        if (
            failing
            and account is not None
            and failing_since is not None
            and now - failing_since >= account.alerts.failing_for
        ):
            message = (
                f"job {job.name!r} has failed for {format_duration(now - failing_since)}: "
                f"{result} (exit {code})"
            )
            self._alert(account, AlertEvent.FAILING, message)
        run_at = previous.last_run_at if result is JobResult.WAITING_FOR_NETWORK else int(started)
        try:
            self.states.update(
                job.name,
                last_run_at=run_at,
                last_result=str(result),
                last_code=code,
                next_run_at=None if next_at is None else int(next_at),
                attempts=attempts,
                failing_since=failing_since,
                running_pid=None,
            )
        except (OSError, UnsafeLocation) as exc:  # the run stands; only `job list` lags
            get_logger(job=job.name).warning("job.state_not_written", error=str(exc))
        return JobRun(result, code, next_at)

    def _alert(self, account: Account, event: AlertEvent, message: str) -> None:
        self._alerter.emit(
            account.name,
            event,
            account.alerts,
            message,
            now=self._clock(),
            provider=wording_for(account).name,
        )

    def record(self, name: str) -> JobRecord:
        return self.states.load(name)


def running_jobs(config: Config, states: JobStates, account: str) -> list[str]:
    """Return the jobs of ``account`` running now, in any process (their records name it)."""
    names = []
    for name, job in sorted(config.jobs.items()):
        pid = states.load(name).running_pid
        if pid is None or config.select(job.account).name != account:
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue  # killed before it could write its result
        except PermissionError:
            pass  # alive, another user's pid now: counted, for a sentence only
        names.append(name)
    return names


def classify(finished: Finished) -> tuple[JobResult, int]:
    """Return the result of a command's exit, and the exit code `job run` passes on."""
    if finished.timed_out:
        return JobResult.TIMED_OUT, EXIT_FAILURE
    if finished.code == EXIT_OK:
        return JobResult.DONE, EXIT_OK
    if finished.code == EXIT_TEMPORARY:
        return JobResult.RETRY, EXIT_TEMPORARY
    if finished.code == EXIT_REAUTH:
        return JobResult.LOGIN_NEEDED, EXIT_REAUTH
    # A signal's death (negative) is an error, reported as a shell would (128 + N).
    return JobResult.FAILED, finished.code if finished.code > 0 else 128 - finished.code
