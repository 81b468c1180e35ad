"""The alerts of one `refresh --all` pass (timer mode, cron): the daemon's events, hooks and
notifications for the same outcomes, with what must outlive the process kept in each account's
state file: when its current run of failures began, and when each standing alert was told.
"""

from __future__ import annotations

from collections.abc import Callable

from tvmaniac_refreshd.config.settings import Account
from tvmaniac_refreshd.core.errors import NotLoggedIn, RefreshdError, SessionRejected
from tvmaniac_refreshd.core.logs import get_logger
from tvmaniac_refreshd.daemon.alerts import (
    Alerter,
    AlertEvent,
    failing_message,
    refreshed_message,
)
from tvmaniac_refreshd.daemon.refresher import Fresh
from tvmaniac_refreshd.providers.factory import wording_for
from tvmaniac_refreshd.storage.state import StateFiles

# A pass waits this long at most for its hooks and notifications (each has its own timeout).
CLOSE_TIMEOUT = 120.0


class StateReminders:
    """``Reminders`` kept in the state files, for processes that live one pass each."""

    def __init__(self, states: StateFiles) -> None:
        self._states = states

    def should_tell(self, account: str, event: AlertEvent, remind_every: float, now: float) -> bool:
        """Return whether to tell ``event`` now, and remember it if so (see Reminders)."""
        if event is AlertEvent.REFRESHED:
            record = self._states.load(account)
            if record.told_reauth_at is not None or record.told_error_at is not None:
                self._states.update(account, told_reauth_at=None, told_error_at=None)
            return True
        record = self._states.load(account)
        reauth = event is AlertEvent.REAUTH_REQUIRED
        last = record.told_reauth_at if reauth else record.told_error_at
        # A clock that went backwards (now < last) tells rather than staying silent for long.
        if last is not None and 0 <= now - last < remind_every:
            return False
        if reauth:
            self._states.update(account, told_reauth_at=int(now))
        else:
            self._states.update(account, told_error_at=int(now))
        return True


class PassAlerts:
    """Tells what each account's refresh in one pass came to, as the daemon would."""

    def __init__(self, states: StateFiles, clock: Callable[[], float], alerter: Alerter) -> None:
        self._states = states
        self._clock = clock
        self._alerter = alerter

    def outcome(self, account: Account, result: Fresh | RefreshdError) -> None:
        """Alert for one account's result; never raises (an alert must not fail the pass)."""
        try:
            self._outcome(account, result)
        except (OSError, RefreshdError) as exc:  # the state file could not be written
            get_logger(account=account.name).warning("alert.failed", error=str(exc))

    def _outcome(self, account: Account, result: Fresh | RefreshdError) -> None:
        now = self._clock()
        if isinstance(result, SessionRejected):
            self._ended_failing(account)
            if not isinstance(result, NotLoggedIn):  # logged out: the daemon tells nobody
                self._emit(account, AlertEvent.REAUTH_REQUIRED, str(result), now)
            return
        if isinstance(result, RefreshdError):
            since = self._states.load(account.name).failing_since
            if since is None:
                since = int(now)
                self._states.update(account.name, failing_since=since)
            if now - since >= account.alerts.failing_for:
                message = failing_message(now - since, result)
                self._emit(account, AlertEvent.FAILING, message, now)
            return
        self._ended_failing(account)
        if result.refreshed:
            message = refreshed_message(wording_for(account).name)
            self._emit(account, AlertEvent.REFRESHED, message, now)

    def _ended_failing(self, account: Account) -> None:
        if self._states.load(account.name).failing_since is not None:
            self._states.update(account.name, failing_since=None)

    def _emit(self, account: Account, event: AlertEvent, message: str, now: float) -> None:
        self._alerter.emit(
            account.name,
            event,
            account.alerts,
            message,
            now=now,
            provider=wording_for(account).name,
        )

    def close(self) -> None:
        """Wait for the hooks and notifications of this pass (each bounded by its timeout)."""
        self._alerter.close(CLOSE_TIMEOUT)
