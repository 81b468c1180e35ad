"""What `status` says about each account: a report built from stored facts, then rendered.

``account_report`` is pure (facts and ``now`` in, an ``AccountReport`` out) so that the JSON
contract and the human text come from the same place. The report objects are typed; their
fields, in order, are the keys of `status --json` (``as_json``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tvmaniac_refreshd.config.settings import Account
from tvmaniac_refreshd.core.durations import format_duration
from tvmaniac_refreshd.core.locations import APP
from tvmaniac_refreshd.core.logs import shown
from tvmaniac_refreshd.core.policy import AccountState, account_state, refresh_due_at
from tvmaniac_refreshd.core.times import iso_utc, local_time
from tvmaniac_refreshd.core.tokens import TokenDocument
from tvmaniac_refreshd.storage.state import AccountRecord

if TYPE_CHECKING:  # the service modules load only when a verb asks the service manager
    from tvmaniac_refreshd.service.base import ServiceState

FORMAT_VERSION = 1

ADVICE = {
    AccountState.LOGGED_OUT: "Not logged in. Run `tvmaniac-refreshd login`.",
    AccountState.ACTIVE: (
        "Nothing to do: the token is valid and will be refreshed when due by the daemon, the "
        "timer, or the next `tvmaniac-refreshd token` or `refresh`."
    ),
    AccountState.REFRESH_DUE: (
        "The token still works but is due for a refresh; the next `refresh` or `token` "
        "will renew it."
    ),
    AccountState.EXPIRED: (
        "The access token has expired; `tvmaniac-refreshd refresh` can still renew it with "
        "the refresh token."
    ),
    AccountState.REAUTH_REQUIRED: (
        "The provider no longer accepts this session. Run `tvmaniac-refreshd login` again."
    ),
}


def iso(timestamp: float | None) -> str | None:
    """Return ``timestamp`` as ISO 8601 UTC with a ``Z``, or None."""
    return None if timestamp is None else iso_utc(timestamp)


# The state of an account whose token could not be read (the keyring is locked or gone).
UNKNOWN = "unknown"


@dataclass(frozen=True)
class AccountReport:
    """One account in `status`; the fields, in this order, are its `--json` object."""

    name: str
    provider: str
    state: str  # an AccountState value, or UNKNOWN
    expires_at: str | None
    refresh_due_at: str | None
    obtained_at: str | None
    logged_in_as: str | None  # the provider's user name, asked at `login`
    last_attempt_at: str | None
    last_success_at: str | None
    last_result: str | None
    last_error: str | None
    reauth_reason: str | None
    consecutive_failures: int
    next_attempt_at: str | None
    advice: str
    # "network": the daemon holds this due refresh until the network is back; else None.
    waiting_for: str | None = None
    # Which source said offline ("NetworkManager", "systemd-networkd", "netlink"); the daemon
    # follows the next one when a source leaves the bus. None when not waiting.
    waiting_for_source: str | None = None


@dataclass(frozen=True)
class StoreReport:
    """Which store holds the tokens, where, and what protects them."""

    backend: str
    location: str | None  # the file store's directory; None for the keyring
    protection: str
    # Who answers org.freedesktop.secrets, and its version (Linux keyring store only).
    secret_service: str | None = None
    # Plain files an encrypted file store left behind (encrypt turned on later); None: keyring.
    plaintext_leftovers: list[str] | None = None


@dataclass(frozen=True)
class DaemonReport:
    running: bool
    pid: int | None


@dataclass(frozen=True)
class StatusReport:
    """Everything `status` shows; ``as_json`` is the `--json` contract (format_version 1)."""

    generated_at: str | None
    store: StoreReport
    daemon: DaemonReport
    service: ServiceState | None  # None: the service manager could not be asked
    accounts: tuple[AccountReport, ...]
    service_error: str | None = None  # why it could not
    keyring_error: str | None = None  # the store could not be read
    jobs: tuple[dict[str, object], ...] = ()  # cli/job_report.py; in --json only when any

    @property
    def timer_active(self) -> bool:
        return self.service is not None and self.service.timer_active

    def as_json(self) -> dict[str, object]:
        payload: dict[str, object] = {
            "format_version": FORMAT_VERSION,
            "generated_at": self.generated_at,
            "store": dataclasses.asdict(self.store),
            "daemon": dataclasses.asdict(self.daemon),
            "service": (
                self.service.as_dict()
                if self.service is not None
                else {"installed": None, "error": self.service_error}
            ),
            "accounts": [dataclasses.asdict(account) for account in self.accounts],
        }
        if self.jobs:
            payload["jobs"] = list(self.jobs)
        if self.keyring_error is not None:
            payload["keyring"] = {"available": False, "error": self.keyring_error}
        return payload


def keeper_advice(
    *,
    daemon_pid: int | None,
    planned: bool,
    timer: bool,
    start: str | None = None,
    installable: bool = True,
) -> str:
    """What `status` says of a valid token: who will refresh it, as far as that is true now.

    ``planned``: the running daemon has written its plan for the account since the CLI last
    changed it (a login resets the plan; the daemon, told at once, writes a new one).
    ``start``: the command that starts an installed service that is not running.
    ``installable``: False where no service can be installed (systemd is not PID 1).
    """
    if daemon_pid:
        if planned:
            return (
                f"Nothing to do: the token is valid, and the daemon (pid {daemon_pid}) will "
                "refresh it when due."
            )
        return (
            f"The token is valid. The daemon (pid {daemon_pid}) has not planned this account "
            "yet (it was just changed); `status` again in a moment shows its plan."
        )
    if timer:
        return "Nothing to do: the token is valid, and the hourly timer will refresh it when due."
    if start:
        return (
            "The token is valid, but the installed service is not running, so only the next "
            f"`token` or `refresh` renews it. Start it with `{start}` (`{APP} service status` "
            "says why it stopped)."
        )
    if not installable:  # no service manager to install into (systemd is not PID 1)
        return (
            "The token is valid, but no daemon or timer is running: only the next `token` or "
            f"`refresh` renews it. `{APP} run` under the supervisor you have, or "
            f"`{APP} refresh --all` from cron, keeps it fresh."
        )
    return (
        "The token is valid, but no daemon or timer is running: only the next `token` or "
        f"`refresh` renews it. `{APP} service install` keeps it fresh."
    )


def account_report(
    account: Account,
    document: TokenDocument | None,
    record: AccountRecord,
    *,
    now: float,
    problem: str | None = None,
    problem_advice: str | None = None,
    keeper: str | None = None,
    daemon_plan: bool = True,
) -> AccountReport:
    """Return the status of one account as the JSON contract describes it.

    ``problem`` is a reason the stored item cannot be used (corrupt, bound to another client):
    such an account needs a new login, and ``problem_advice`` says what to do (the provider
    rejected nothing, so the usual advice would be wrong). ``keeper`` replaces the advice for a
    valid token (see ``keeper_advice``); ``daemon_plan`` is whether a running daemon's plan may
    be shown, for a plan left in the state file by an earlier daemon is no plan at all.
    """
    tokens = document.tokens if document is not None else None
    reauth = problem is not None or (
        tokens is not None and record.needs_reauth(tokens.refresh_token)
    )
    state = account_state(
        tokens, account.refresh, now=now, salt=account.name, reauth_required=reauth
    )
    if problem is not None and document is None:
        state = AccountState.REAUTH_REQUIRED
    due = refresh_due_at(tokens, account.refresh, salt=account.name) if tokens else None
    usable = state in (AccountState.ACTIVE, AccountState.REFRESH_DUE, AccountState.EXPIRED)
    return AccountReport(
        name=account.name,
        provider=account.provider,
        state=state.value,
        expires_at=iso(tokens.expires_at) if tokens else None,
        refresh_due_at=iso(due) if usable else None,
        obtained_at=iso(document.obtained_at) if document else None,
        logged_in_as=record.logged_in_as if document else None,
        last_attempt_at=iso(record.last_attempt_at),
        last_success_at=iso(record.last_success_at),
        last_result=record.last_result,
        last_error=shown(problem or record.last_error or "") or None,
        reauth_reason=(problem or record.reauth_reason) if reauth else None,
        consecutive_failures=record.consecutive_failures,
        next_attempt_at=iso(record.next_attempt_at) if usable and daemon_plan else None,
        advice=_advice(state, keeper=keeper, problem_advice=problem_advice),
        waiting_for=_waiting_for(record) if daemon_plan else None,
        waiting_for_source=(
            record.waiting_for_network_source
            if daemon_plan and _waiting_for(record) == "network"
            else None
        ),
    )


def _advice(state: AccountState, *, keeper: str | None, problem_advice: str | None) -> str:
    if problem_advice is not None:
        return problem_advice
    if state is AccountState.ACTIVE and keeper is not None:
        return keeper
    return ADVICE[state]


def _waiting_for(record: AccountRecord) -> str | None:
    if record.waiting_for_job is not None:
        return f"job:{record.waiting_for_job}"
    return "network" if record.waiting_for_network_since is not None else None


def unknown_report(
    account: Account, record: AccountRecord, *, reason: str, daemon_plan: bool
) -> AccountReport:
    """The status of an account whose token cannot be read: what the state file knows."""
    return AccountReport(
        name=account.name,
        provider=account.provider,
        state=UNKNOWN,
        expires_at=None,
        refresh_due_at=None,
        obtained_at=None,
        logged_in_as=record.logged_in_as,
        last_attempt_at=iso(record.last_attempt_at),
        last_success_at=iso(record.last_success_at),
        last_result=record.last_result,
        last_error=shown(record.last_error or "") or None,
        reauth_reason=None,
        consecutive_failures=record.consecutive_failures,
        next_attempt_at=iso(record.next_attempt_at) if daemon_plan else None,
        advice=f"The token cannot be read: {reason}",
        waiting_for=_waiting_for(record) if daemon_plan else None,
        waiting_for_source=(
            record.waiting_for_network_source
            if daemon_plan and _waiting_for(record) == "network"
            else None
        ),
    )


def _when(text: str | None, now: float) -> str:
    if text is None:
        return "never"
    moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    delta = moment.timestamp() - now
    relative = f"in {format_duration(delta)}" if delta >= 0 else f"{format_duration(-delta)} ago"
    return f"{local_time(moment)} ({relative})"


def render_text(reports: list[AccountReport], *, now: float) -> str:
    """Return the human-readable status of every account."""
    blocks = []
    for report in reports:
        lines = [f"{report.name}: {report.state}"]
        if report.logged_in_as:
            lines.append(f"  logged in as:         {report.logged_in_as}")
        if report.state == UNKNOWN:
            lines.append("  access token expires: unknown (the token cannot be read)")
        if report.expires_at:
            lines.append(f"  access token expires: {_when(report.expires_at, now)}")
        if report.refresh_due_at:
            lines.append(f"  next refresh due:     {_when(report.refresh_due_at, now)}")
        if report.next_attempt_at and report.next_attempt_at != report.refresh_due_at:
            lines.append(f"  daemon's next try:    {_when(report.next_attempt_at, now)}")
        if report.waiting_for == "network":
            source = f", as {report.waiting_for_source} says" if report.waiting_for_source else ""
            lines.append(f"  daemon:               waiting for the network (offline{source})")
        elif report.waiting_for and report.waiting_for.startswith("job:"):
            jobs = report.waiting_for.removeprefix("job:") or "a job"
            lines.append(f"  daemon:               refresh waiting for job {jobs} to end")
        if report.last_result:
            lines.append(
                f"  last attempt:         {report.last_result}, "
                f"{_when(report.last_attempt_at, now)}"
            )
        if report.last_error:
            lines.append(f"  last error:           {report.last_error}")
        lines.append(f"  {report.advice}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"
