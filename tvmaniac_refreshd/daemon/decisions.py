"""The daemon's decisions: when each account is tried next, and what an outcome leads to.

``Daemon`` holds no threads and reads no clock of its own: the scheduler calls ``run_account``
and ``tick``, and tests call them directly with a fake planner and clock. ``runner.py`` wires it
to APScheduler, signals and systemd.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import threading
from collections.abc import Callable, Collection, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from enum import StrEnum

from tvmaniac_refreshd.config.settings import Account, Config
from tvmaniac_refreshd.core.errors import (
    NotLoggedIn,
    RefreshdError,
    SessionRejected,
    StateUnwritable,
    StoreUnavailable,
    TokenInUse,
    TransientError,
    UnsafeLocation,
)
from tvmaniac_refreshd.core.logs import get_logger
from tvmaniac_refreshd.core.policy import refresh_due_at, retry_delay
from tvmaniac_refreshd.daemon.alerts import Alerter, AlertEvent, failing_message, refreshed_message
from tvmaniac_refreshd.daemon.network import NetworkState
from tvmaniac_refreshd.daemon.refresher import Refresher
from tvmaniac_refreshd.daemon.scheduler import Planner
from tvmaniac_refreshd.providers.factory import wording_for
from tvmaniac_refreshd.storage.state import RefreshResult, StateFiles, token_digest

# Wall and monotonic clocks drifting apart by more than this means a suspend or a clock change.
CLOCK_JUMP_SECONDS = 5.0
MIN_GAP_SHARE = 0.1
# A refresh waiting for a job looks again this often, beside the watcher of the job's end.
JOB_RECHECK_SECONDS = 300.0
# Beyond this many accounts, STATUS= (one short line) gives counts instead of a list.
MAX_STATUS_PARTS = 4


class Condition(StrEnum):
    """Where an account stands in the daemon; STATUS= counts accounts by these values."""

    STARTING = "starting"
    SCHEDULED = "scheduled"  # the next refresh is planned at its due time
    RETRYING = "retrying"  # a failure; a retry is planned
    KEYRING_UNAVAILABLE = "keyring_unavailable"  # retrying until the keyring answers
    LOGIN_NEEDED = "login_needed"  # not planned until a new login
    LOGGED_OUT = "logged_out"  # no tokens; not planned
    WAITING_FOR_NETWORK = "waiting_for_network"  # due, offline: tried when the network is back
    WAITING_FOR_JOB = "waiting_for_job"  # due while a job runs with the token: tried at its end


@dataclass
class Watch:
    """What the daemon knows about one account between runs."""

    condition: Condition = Condition.STARTING
    next_at: float | None = None
    attempts: int = 0  # consecutive failures
    failing_since: float | None = None
    last_result: str | None = None  # in `status`'s words (RefreshResult), for STATUS=
    stamp: int | None = None  # state file's mtime after we last looked, to notice the CLI
    token: str | None = None  # digest of the refresh token last seen, to notice new tokens
    jobs: tuple[str, ...] = ()  # the jobs a WAITING_FOR_JOB refresh waits for


def _listed(watch: Watch) -> bool:
    """Whether ``Daemon.status_line`` gives ``watch`` a part of its own."""
    return watch.condition in (
        Condition.LOGIN_NEEDED,
        Condition.LOGGED_OUT,
        Condition.WAITING_FOR_NETWORK,
        Condition.WAITING_FOR_JOB,
    ) or (watch.next_at is not None)


class Daemon:
    """Keeps every configured account planned, refreshed and retried."""

    def __init__(
        self,
        config: Config,
        *,
        planner: Planner,
        refresher: Callable[[Account], Refresher],
        states: StateFiles,
        alerter: Alerter,
        clock: Callable[[], float],
        monotonic: Callable[[], float],
        share: Callable[[], float],
        on_change: Callable[[], object] = lambda: None,
        network: NetworkState | None = None,
        read_ahead: Callable[[Collection[str]], AbstractContextManager[None]] = (
            lambda _: contextlib.nullcontext()  # a store that cannot read in bulk
        ),
    ) -> None:
        """``read_ahead``: the store's, so that planning every account reads them in bulk."""
        self.config = config
        self._read_ahead = read_ahead
        self._planner = planner
        self._refresher = refresher
        self._states = states
        self._alerter = alerter
        self._clock = clock
        self.clock = clock
        self._monotonic = monotonic
        self._share = share
        self._on_change = on_change
        # Without an event source the network counts as always there: nothing is deferred.
        self.network = network or NetworkState()
        self._log = get_logger()
        self._locks: dict[str, threading.Lock] = {}
        self.watches: dict[str, Watch] = {}
        self._last_clocks: tuple[float, float] | None = None
        self._busy = threading.Condition()
        self.in_flight = 0
        # A refresh due while a job runs with the token (TokenInUse) waits for its end:
        # ``after_jobs(refresher, then)`` calls ``then`` once no job holds the token (runner.py
        # watches the in-use lock); ``jobs_using`` names the jobs for STATUS=.
        self.after_jobs: Callable[[Refresher, Callable[[], object]], None] = lambda _r, _t: None
        self.jobs_using: Callable[[str], list[str]] = lambda _account: []
        # The jobs' part of STATUS= (daemon/job_schedule.py), after the accounts'.
        self.jobs_status: Callable[[], str] = lambda: ""

    # -- planning -----------------------------------------------------------------------

    def plan_all(self, only: Collection[str] | None = None) -> None:
        """Plan every account (or those of ``only``) from the keyring (at start, after a
        reload, a resume or a clock jump)."""
        names = [name for name in self.config.accounts if only is None or name in only]
        with self._read_ahead(names):
            for name in names:
                self.run_account(name, refresh=False, announce=False)
        # Once, not per account: the STATUS line covers every account, so announcing each of a
        # thousand would cost a thousand times a thousand.
        self._on_change()

    def recheck(self) -> None:
        """The periodic safety check (``check_interval``): re-plan only what no longer stands.

        It runs on the scheduler's own thread and reads no keyring: a stat of each state file
        and a look at the scheduler's plan. An account whose state file changed (the CLI), whose
        job is gone or moved, or that waits for a network that is back, is re-planned from the
        keyring on the pool; one whose plan stands costs nothing, which is what keeps an idle
        daemon with event sources at about one wake-up an hour.
        """
        stale = [name for name in list(self.config.accounts) if not self._plan_stands(name)]
        if stale:
            self._log.info("daemon.recheck", stale=len(stale))
            self._planner.at("recheck", self._clock(), functools.partial(self.plan_all, stale))

    def _plan_stands(self, name: str) -> bool:
        watch = self.watches.get(name)
        if watch is None or self._lock(name).locked():
            return watch is not None  # being run right now: it plans itself when done
        if watch.stamp != self._states.stamp(name):
            return False
        if watch.condition is Condition.WAITING_FOR_NETWORK:
            return not self.network.online
        planned = self._planner.planned(f"refresh:{name}")
        if watch.condition is Condition.WAITING_FOR_JOB:  # its look-again job stands for a plan
            return planned is not None
        if watch.next_at is None:
            return watch.condition in (Condition.LOGIN_NEEDED, Condition.LOGGED_OUT)
        # APScheduler keeps microseconds of a float time; a second apart is another plan.
        return planned is not None and abs(planned - watch.next_at) < 1.0

    def _lock(self, name: str) -> threading.Lock:
        return self._locks.setdefault(name, threading.Lock())

    def run_account(self, name: str, *, refresh: bool = True, announce: bool = True) -> None:
        """Refresh ``name`` if it is due (``refresh``), then plan its next run; never raise.

        ``announce``: report the new status when done (plan_all reports once, at its end).
        """
        account = self.config.accounts.get(name)
        if account is None:  # removed by a reload
            self._planner.cancel(f"refresh:{name}")
            self.watches.pop(name, None)
            return
        with self._lock(name), self._counting():
            watch = self.watches.setdefault(name, Watch())
            try:
                self._attempt(account, watch, refresh=refresh)
            except Exception as exc:  # a bug must not stop the other accounts
                self._log.exception("daemon.unexpected_error", account=name, error=repr(exc))
                self._failed(account, watch, RefreshdError(f"internal error: {exc!r}"))
            watch.stamp = self._states.stamp(name)
        if announce:
            self._on_change()

    def _attempt(self, account: Account, watch: Watch, *, refresh: bool) -> None:
        refresher = self._refresher(account)
        try:
            if refresh and not self.network.online:
                document = refresher.load()
                # Due (or a retry): defer it, as WorkManager holds work that needs the network.
                # No attempt is made, so nothing counts as a failure and the backoff stays.
                if watch.attempts or refresher.due(document):
                    self._wait_for_network(account, watch)
                    return
                refresh = False  # not due after all: plan it as usual
            if refresh:
                # The token planned for: read once, under the lock (refresher.py).
                fresh = refresher.ensure_fresh(planned=watch.token)
                document = fresh.document
                if fresh.refreshed:
                    watch.last_result = RefreshResult.REFRESHED
                    name = wording_for(account).name
                    self._alert(account, AlertEvent.REFRESHED, refreshed_message(name))
            else:
                document = refresher.load()
        except NotLoggedIn:
            self._stop_planning(account, watch, Condition.LOGGED_OUT)
            return
        except SessionRejected as exc:
            self._stop_planning(account, watch, Condition.LOGIN_NEEDED)
            self._alert(account, AlertEvent.REAUTH_REQUIRED, str(exc))
            return
        except TokenInUse:
            self._wait_for_job(account, watch, refresher)
            return
        except RefreshdError as exc:  # TransientError, StoreUnavailable, ... alike
            self._failed(account, watch, exc)
            return
        seen = token_digest(document.tokens.refresh_token)
        # New tokens stored by another process (a CLI `refresh` or `login`) end the backoff:
        # waiting out a retry planned for the old ones could let the new ones expire.
        replaced = watch.token is not None and watch.token != seen
        watch.token = seen
        if watch.attempts and (refresh or replaced):
            self._log.info("daemon.recovered", account=account.name, after=watch.attempts)
        elif watch.attempts and watch.next_at and watch.next_at > self._clock():
            return  # a retry is already planned; planning again must not skip the backoff
        watch.attempts = 0
        watch.failing_since = None
        due = float(refresh_due_at(document.tokens, account.refresh, salt=account.name))
        if refresh:
            # A pair that is due the moment it arrives (a server clock far behind ours) must
            # not set off a refresh storm: wait at least a tenth of its lifetime.
            due = max(due, self._clock() + max(1.0, MIN_GAP_SHARE * document.tokens.expires_in))
        self._plan(account, watch, Condition.SCHEDULED, due)

    def _failed(self, account: Account, watch: Watch, error: RefreshdError) -> None:
        now = self._clock()
        watch.attempts += 1
        watch.failing_since = watch.failing_since or now
        watch.last_result = (
            RefreshResult.TRANSIENT if isinstance(error, TransientError) else RefreshResult.FAILED
        )
        retry_after = error.retry_after if isinstance(error, TransientError) else None
        delay = retry_delay(
            watch.attempts, account.retry, retry_after=retry_after, share=self._share()
        )
        condition = (
            Condition.KEYRING_UNAVAILABLE
            if isinstance(error, StoreUnavailable)
            else Condition.RETRYING
        )
        self._plan(account, watch, condition, now + delay)
        self._log.warning(
            "daemon.retry_planned",
            account=account.name,
            attempt=watch.attempts,
            retry_in_s=round(delay),
            error=str(error),
        )
        if now - watch.failing_since >= account.alerts.failing_for:
            self._alert(
                account, AlertEvent.FAILING, failing_message(now - watch.failing_since, error)
            )

    def _wait_for_network(self, account: Account, watch: Watch) -> None:
        if watch.condition is not Condition.WAITING_FOR_NETWORK:
            self._log.info(
                "daemon.waiting_for_network",
                account=account.name,
                source=self.network.source,
                attempts=watch.attempts,
            )
        watch.condition = Condition.WAITING_FOR_NETWORK
        watch.next_at = None
        self._planner.cancel(f"refresh:{account.name}")
        try:
            self._states.update(
                account.name,
                next_attempt_at=None,
                waiting_for_network_since=int(self._clock()),
                waiting_for_network_source=self.network.source,
                waiting_for_job=None,
            )
        except (StateUnwritable, UnsafeLocation) as exc:
            self._log.warning("daemon.state_not_written", account=account.name, error=str(exc))
        if self.network.online:
            # It came back while we were deciding, and network_returned may have run already.
            self._planner.at(
                f"refresh:{account.name}", self._clock(), lambda: self.run_account(account.name)
            )

    def _wait_for_job(self, account: Account, watch: Watch, refresher: Refresher) -> None:
        """Defer a due refresh until the jobs running with the token end: spending the refresh
        token would replace theirs. Not a failure: the backoff and the attempts stay. A job's
        token outlives its timeout (daemon/jobs.py), so waiting never lets it expire."""
        watch.jobs = tuple(self.jobs_using(account.name))
        self._log.info("daemon.waiting_for_job", account=account.name, jobs=",".join(watch.jobs))
        watch.condition = Condition.WAITING_FOR_JOB
        watch.next_at = None
        # Also a look now and then, should the watcher fail: a refresh must not wait forever.
        when = self._clock() + JOB_RECHECK_SECONDS
        self._planner.at(f"refresh:{account.name}", when, lambda: self.run_account(account.name))
        try:
            self._states.update(
                account.name, next_attempt_at=int(when), waiting_for_job=",".join(watch.jobs)
            )
        except (StateUnwritable, UnsafeLocation) as exc:
            self._log.warning("daemon.state_not_written", account=account.name, error=str(exc))
        self.after_jobs(
            refresher,
            lambda: self._planner.at(
                f"refresh:{account.name}", self._clock(), lambda: self.run_account(account.name)
            ),
        )

    def network_returned(self) -> None:
        """The network is back: run every account that was waiting for it, now."""
        waiting = [
            name
            for name, watch in list(self.watches.items())
            if watch.condition is Condition.WAITING_FOR_NETWORK
        ]
        self._log.info("daemon.network_returned", source=self.network.source, waiting=len(waiting))
        now = self._clock()
        for name in waiting:
            self._planner.at(f"refresh:{name}", now, functools.partial(self.run_account, name))

    def resumed(self) -> None:
        """The machine woke from sleep (logind said so): re-plan every account at once."""
        self._log.info("daemon.resumed")
        self._last_clocks = None  # the jump is known; the next tick must not report it again
        self.plan_all()

    def clock_stepped(self) -> None:
        """The wall clock was set (the kernel said so): every plan is in wall-clock time, so
        re-plan every account at once rather than at the next wake-up."""
        self._log.info("daemon.clock_step")
        self._last_clocks = None  # the step is known; the next tick must not report it again
        self.plan_all()

    def _plan(self, account: Account, watch: Watch, condition: Condition, when: float) -> None:
        watch.condition = condition
        watch.next_at = when
        self._planner.at(f"refresh:{account.name}", when, lambda: self.run_account(account.name))
        self._record(account.name, when)

    def _stop_planning(self, account: Account, watch: Watch, condition: Condition) -> None:
        watch.condition = condition
        watch.next_at = None
        watch.attempts = 0
        watch.failing_since = None
        self._planner.cancel(f"refresh:{account.name}")
        self._record(account.name, None)

    def _record(self, name: str, when: float | None) -> None:
        try:
            self._states.update(
                name,
                next_attempt_at=None if when is None else int(when),
                waiting_for_network_since=None,
                waiting_for_network_source=None,
                waiting_for_job=None,
                durable=False,  # planned again at the next start if a power cut loses it
            )
        except (StateUnwritable, UnsafeLocation) as exc:  # the plan stands; only `status` lags
            self._log.warning("daemon.state_not_written", account=name, error=str(exc))

    def _alert(self, account: Account, event: AlertEvent, message: str) -> None:
        self._alerter.emit(
            account.name,
            event,
            account.alerts,
            message,
            now=self._clock(),
            provider=wording_for(account).name,
        )

    # -- periodic -----------------------------------------------------------------------

    def tick(self) -> None:
        """Notice a suspend or clock jump, and logins or logouts done by the CLI."""
        wall, mono = self._clock(), self._monotonic()
        previous, self._last_clocks = self._last_clocks, (wall, mono)
        if previous is not None:
            drift = (wall - previous[0]) - (mono - previous[1])
            if abs(drift) > CLOCK_JUMP_SECONDS:
                self._log.info("daemon.clock_jump", drift_s=round(drift))
                self.plan_all()
                return
        self.notice_changes()

    def notice_changes(self) -> None:
        """Re-plan the accounts whose state file the CLI changed (login, logout, refresh).

        The CLI signals the daemon after such a change (runner.py), and every tick looks too,
        in case the signal came from a CLI with another idea of the config or was lost.
        """
        for name in list(self.config.accounts):
            watch = self.watches.get(name)
            if watch is not None and watch.stamp != self._states.stamp(name):
                if self._lock(name).locked():
                    continue  # being refreshed right now; it re-plans itself
                self._log.info("daemon.account_changed", account=name)
                self.run_account(name, refresh=False)

    def log_plan(self) -> None:
        """Log one line per account with what is planned, so each ACCOUNT= has an entry at once."""
        for name, watch in sorted(self.watches.items()):
            self._log.info(
                "daemon.planned",
                account=name,
                condition=watch.condition,
                next_attempt_at=None if watch.next_at is None else int(watch.next_at),
            )

    def reload(
        self, config: Config, *, refresher: Callable[[Account], Refresher] | None = None
    ) -> None:
        """Adopt a new config (and the refreshers built from it): plan new accounts, drop
        removed ones, re-plan the rest."""
        for name in set(self.config.accounts) - set(config.accounts):
            self._planner.cancel(f"refresh:{name}")
            self.watches.pop(name, None)
        self.config = config
        if refresher is not None:
            self._refresher = refresher
        # On the scheduler's pool, not the caller's thread: with many accounts re-planning
        # takes a while, and the main thread must stay free for the next signal.
        self._planner.at("replan", self._clock(), self.plan_all)

    # -- reporting ----------------------------------------------------------------------

    def status_line(self) -> str:
        """Return the one-line STATUS= text: next refresh, last result, or what is needed.

        Times are absolute (local, with the zone): systemctl shows STATUS= long after it was
        sent, and "in 28s" would be wrong a minute later.
        """
        jobs = self.jobs_status()
        return f"{self._accounts_status()}; {jobs}" if jobs else self._accounts_status()

    def announce(self) -> None:
        """Report the status now (a job has run: its part of STATUS= changed)."""
        self._on_change()

    def _accounts_status(self) -> str:
        now = self._clock()
        if sum(map(_listed, self.watches.values())) > MAX_STATUS_PARTS:
            return self._summary(now)  # without formatting a line per account first
        parts = []
        for name, watch in sorted(self.watches.items()):
            if watch.condition is Condition.LOGIN_NEEDED:
                parts.append(f"{name}: login needed")
            elif watch.condition is Condition.WAITING_FOR_NETWORK:
                parts.append(f"{name}: waiting for the network")
            elif watch.condition is Condition.WAITING_FOR_JOB:
                jobs = ", ".join(watch.jobs)
                parts.append(
                    f"{name}: refresh waiting for job {jobs}"
                    if jobs
                    else f"{name}: refresh waiting for a job to end"
                )
            elif watch.condition is Condition.LOGGED_OUT:
                parts.append(f"{name}: not logged in")
            elif watch.condition is Condition.KEYRING_UNAVAILABLE and watch.next_at is not None:
                when = clock_time(watch.next_at, now)
                parts.append(f"{name}: keyring locked or unavailable, retry at {when}")
            elif watch.next_at is not None:
                verb = "next refresh" if watch.condition is Condition.SCHEDULED else "retry"
                text = f"{name}: {verb} at {clock_time(watch.next_at, now)}"
                if watch.last_result:
                    text += f" (last attempt: {watch.last_result})"
                parts.append(text)
        return "; ".join(parts) or "no accounts"

    def _summary(self, now: float) -> str:
        """Return a STATUS line for many accounts: counts per condition and the next refresh."""
        counts: dict[str, int] = {}
        for watch in self.watches.values():
            counts[watch.condition] = counts.get(watch.condition, 0) + 1
        upcoming = [
            watch.next_at
            for watch in self.watches.values()
            if watch.condition is Condition.SCHEDULED and watch.next_at is not None
        ]
        text = f"{len(self.watches)} accounts: " + ", ".join(
            f"{count} {condition.replace('_', ' ')}" for condition, count in sorted(counts.items())
        )
        if upcoming:
            text += f"; next refresh at {clock_time(min(upcoming), now)}"
        return text

    @contextlib.contextmanager
    def _counting(self) -> Iterator[None]:
        """Count a running account job, so that shutdown can wait for it."""
        with self._busy:
            self.in_flight += 1
        try:
            yield
        finally:
            with self._busy:
                self.in_flight -= 1
                self._busy.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for running refreshes to end; return whether they did."""
        with self._busy:
            return self._busy.wait_for(lambda: self.in_flight == 0, timeout)


def clock_time(timestamp: float, now: float) -> str:
    """``14:05 CET`` in the local zone; with the date in front when it is not today."""
    moment = dt.datetime.fromtimestamp(timestamp).astimezone()
    today = dt.datetime.fromtimestamp(now).astimezone().date()
    shown = moment.strftime("%H:%M %Z")
    return shown if moment.date() == today else f"{moment:%Y-%m-%d} {shown}"
