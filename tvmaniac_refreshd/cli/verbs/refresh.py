"""`refresh`: refresh each selected account that is due, then exit (what the timer runs)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tvmaniac_refreshd.cli.app import App
from tvmaniac_refreshd.cli.grammar import Verb, duration_arg
from tvmaniac_refreshd.core.durations import format_duration
from tvmaniac_refreshd.core.errors import (
    EXIT_CONFIG,
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_REAUTH,
    EXIT_STORE_UNAVAILABLE,
    EXIT_TEMPORARY,
    NotLoggedIn,
    RefreshdError,
    TokenInUse,
)
from tvmaniac_refreshd.core.launchd_log import in_background_session, trim_launchd_logs
from tvmaniac_refreshd.core.policy import refresh_due_at
from tvmaniac_refreshd.core.times import local_time

if TYPE_CHECKING:
    from tvmaniac_refreshd.config.settings import Account
    from tvmaniac_refreshd.daemon.pass_alerts import PassAlerts
    from tvmaniac_refreshd.daemon.refresher import Fresh

# When several accounts fail differently, the exit code reports the one most in need of a human.
SEVERITY = (EXIT_CONFIG, EXIT_STORE_UNAVAILABLE, EXIT_REAUTH, EXIT_FAILURE, EXIT_TEMPORARY)


@dataclass(frozen=True)
class RefreshOptions:
    force: bool = False
    all: bool = False
    wait_for_network: int | None = None


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--force", action="store_true", help="refresh even if not due")
    parser.add_argument(
        "--all", action="store_true", help="every configured account, not just --account"
    )
    parser.add_argument(
        "--wait-for-network",
        type=duration_arg,
        metavar="DURATION",
        help="when an account is due and the machine is offline, wait this long for the "
        "network first (the timer's unit: 2m); still offline: exit 75, nothing tried",
    )


def run(app: App, options: RefreshOptions) -> int:
    trim_launchd_logs(app.environ)  # the timer agent's log files, which launchd never rotates
    codes: list[int] = []
    changed = False
    accounts = app.selected(every=options.all)
    if options.wait_for_network is not None and _offline(app, accounts, options):
        return EXIT_TEMPORARY
    # The pass the timer (or cron) runs tells the user as the daemon would: [alerts].
    alerts = _pass_alerts(app) if options.all else None
    try:
        for account in accounts:
            try:
                # A job running with the token holds the refresh for a bounded wait (75 after).
                fresh = app.refresher(account).ensure_fresh(
                    force=options.force, job_wait=app.config.store.lock_timeout
                )
            except TokenInUse as exc:
                # Deferred, not failed: no alert, and the daemon's backoff stays as it was.
                app.problem(_waiting_for(app, account, exc), temporary=True, account=account.name)
                codes.append(exc.exit_code)
                continue
            except RefreshdError as exc:
                if alerts is not None:
                    alerts.outcome(account, exc)
                # One rule, whatever the number of accounts: `--all` (the timer) skips an
                # account nobody has logged in to; a rejected session still needs a human (77).
                if isinstance(exc, NotLoggedIn) and options.all:
                    app.out.write(f"{account.name}: not logged in; skipped\n")
                    continue
                temporary = exc.exit_code == EXIT_TEMPORARY
                app.problem(f"{account.name}: {exc}", temporary=temporary, account=account.name)
                codes.append(exc.exit_code)
                continue
            if alerts is not None:
                alerts.outcome(account, fresh)
            changed = _report(app, account, fresh) or changed
    finally:
        if alerts is not None:
            alerts.close()
    if changed:
        app.tell_daemon()
    return next((code for code in SEVERITY if code in codes), EXIT_OK)


def _waiting_for(app: App, account: Account, exc: TokenInUse) -> str:
    """The sentence for a refresh that waited for a job: which job, when known."""
    from tvmaniac_refreshd.daemon.jobs import running_jobs  # noqa: PLC0415

    names = running_jobs(app.config, app.job_states, account.name)
    which = f" (job {', '.join(names)})" if names else ""
    return f"{account.name}: not refreshed{which}: {exc}"


def _offline(app: App, accounts: list[Account], options: RefreshOptions) -> bool:
    """Whether a due account finds the machine offline for all of ``--wait-for-network``."""
    due = []
    for account in accounts:
        try:
            document = app.refresher(account).load()
        except RefreshdError:
            continue  # the loop below reports it, as before
        if options.force or app.refresher(account).due(document):
            due.append(account.name)
    if not due:
        return False
    from tvmaniac_refreshd.daemon.events import wait_for_network  # noqa: PLC0415

    seconds = options.wait_for_network or 0
    online, source = wait_for_network(app.environ, seconds)
    if online:
        return False
    app.problem(
        f"offline: no network (as {source} says) after waiting "
        f"{format_duration(seconds)}; due and not tried: {', '.join(due)}; "
        "the next timer run tries again",
        temporary=True,
    )
    return True


def _pass_alerts(app: App) -> PassAlerts:
    from tvmaniac_refreshd.daemon.alerts import Alerter  # noqa: PLC0415
    from tvmaniac_refreshd.daemon.hook_sandbox import current_unit  # noqa: PLC0415
    from tvmaniac_refreshd.daemon.pass_alerts import PassAlerts, StateReminders  # noqa: PLC0415

    alerter = Alerter(
        desktop=not in_background_session(app.environ),
        reminders=StateReminders(app.states),
        unit=current_unit(app.environ),
    )
    return PassAlerts(app.states, app.clock, alerter)


def _report(app: App, account: Account, fresh: Fresh) -> bool:
    """Print one account's result; return whether it was refreshed."""
    tokens = fresh.document.tokens
    due = refresh_due_at(tokens, account.refresh, salt=account.name)
    if fresh.refreshed:
        what = "refreshed"
    elif fresh.by_other:
        what = "refreshed by another process"
    else:
        what = "not due"
    app.out.write(
        f"{account.name}: {what}; expires {local_time(tokens.expires_at)}, next refresh due "
        f"{local_time(due)} (in {format_duration(due - app.clock())})\n"
    )
    return fresh.refreshed


VERB = Verb(
    "refresh",
    "Refresh each selected account that is due, then exit (what the timer runs).",
    RefreshOptions,
    run,
    arguments,
)
