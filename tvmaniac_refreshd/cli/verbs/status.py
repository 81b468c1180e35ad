"""`status`: each account's state, expiry, next refresh and last result; it never refreshes."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tvmaniac_refreshd.cli.app import App
from tvmaniac_refreshd.cli.grammar import Verb
from tvmaniac_refreshd.cli.job_report import job_reports, render_jobs
from tvmaniac_refreshd.cli.plaintext import warn_plaintext
from tvmaniac_refreshd.cli.status import (
    FORMAT_VERSION,
    AccountReport,
    DaemonReport,
    StatusReport,
    StoreReport,
    account_report,
    iso,
    keeper_advice,
    render_text,
    unknown_report,
)
from tvmaniac_refreshd.config.binding import mismatch, way_out
from tvmaniac_refreshd.config.settings import Account
from tvmaniac_refreshd.core.errors import (
    EXIT_OK,
    EXIT_REAUTH,
    EXIT_STORE_UNAVAILABLE,
    ConfigError,
    RefreshdError,
    StoreCorrupt,
    StoreUnavailable,
)
from tvmaniac_refreshd.core.locations import APP
from tvmaniac_refreshd.core.logs import register_secret, shown
from tvmaniac_refreshd.core.tokens import TokenDocument
from tvmaniac_refreshd.runtime.access import file_store_dir
from tvmaniac_refreshd.storage.credentials import resolve_client_secret
from tvmaniac_refreshd.storage.state import AccountRecord

if TYPE_CHECKING:
    from tvmaniac_refreshd.service.base import ServiceState

# States in which only a person running `login` helps (`status --check` exits 77).
NEEDS_LOGIN = ("logged_out", "reauth_required")


@dataclass(frozen=True)
class StatusOptions:
    json: bool = False
    check: bool = False  # exit 77 if any account needs `login`


UNREADABLE = "the store is unavailable (why, and what to do: its line below, or `keyring.error`)"


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", action="store_true", help='machine-readable output ("format_version": 1)'
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="a health check: exit 77 if any account needs `login`, else 0",
    )


def _know_secrets(
    app: App, account: Account, document: TokenDocument | None, record: AccountRecord
) -> None:
    """Register what `status` must never show: a stored error text may predate redaction."""
    if document is not None:
        register_secret(document.tokens.access_token)
        register_secret(document.tokens.refresh_token)
    if record.last_error:
        with contextlib.suppress(RefreshdError):
            resolve_client_secret(account, app.environ, app.store)  # registers it


def run(app: App, options: StatusOptions) -> int:
    try:
        report = gather(app)
    except RefreshdError as exc:
        if not options.json:
            raise
        # Scripts parse stdout: what failed goes inside the JSON, and the exit code says it.
        failure: dict[str, object] = {"format_version": FORMAT_VERSION, "error": shown(str(exc))}
        if isinstance(exc, ConfigError):
            failure["problems"] = [shown(problem) for problem in exc.problems]
        app.out.write(json.dumps(failure, indent=2) + "\n")
        return exc.exit_code
    if options.json:
        app.out.write(json.dumps(report.as_json(), indent=2) + "\n")
    elif not options.check or app.common.verbose:  # a health check is quiet unless -v
        app.out.write(app.hint(render(report, now=app.clock())))
    # The exit code still says what failed, for scripts that only look at it.
    if report.keyring_error is not None:
        return EXIT_STORE_UNAVAILABLE
    return _health(app, report.accounts, check=options.check)


def gather(app: App) -> StatusReport:
    """Read what `status` shows: the daemon, the service, the store and every account."""
    # Who keeps the tokens fresh is known first, so that each account says only what is true
    # now: a plan left in the state file by an earlier daemon, in timer mode, is no plan.
    app.warn_disagreements()
    pid = app.daemon_pid()
    service, service_error = _service(app)
    # Made first: a store this system cannot provide (encryption it lacks) is exit 78 here.
    store = StoreReport(
        app.store.kind, file_store_dir(app), app.store.protection(), _secret_service(app)
    )
    timer = service is not None and service.timer_active
    reports: list[AccountReport] = []
    plaintext: list[str] = []  # unencrypted copies an encrypted file store left behind
    keyring_error: str | None = None
    now = app.clock()
    # Without a named account, status shows them all: it reads, it never refreshes.
    for account in app.selected(every=app.account_name is None):
        record = app.states.load(account.name)
        problem: str | None = None
        problem_advice: str | None = None
        document: TokenDocument | None = None
        try:
            document = app.store.load(account.name)
        except StoreCorrupt as exc:
            problem = str(exc)
            problem_advice = "The stored item cannot be used; the last error says what to do."
        except StoreUnavailable as exc:
            # Still worth showing: the state file, the daemon and the service need no keyring.
            keyring_error = shown(str(exc))
            reports.append(
                # The store's error and its recipe are said once, after the accounts.
                unknown_report(account, record, reason=UNREADABLE, daemon_plan=bool(pid))
            )
            continue
        _know_secrets(app, account, document, record)
        plaintext.extend(warn_plaintext(app, account))
        if document is not None and (problem := mismatch(account, document)) is not None:
            problem_advice = f"Nothing was sent. To use this config, {way_out(account)}."
        keeper = keeper_advice(
            daemon_pid=pid,
            planned=record.next_attempt_at is not None,
            timer=timer,
            start=service.start if service is not None else None,
            installable=service is None or service.available,
        )
        found = account_report(
            account,
            document,
            record,
            now=now,
            problem=problem,
            problem_advice=problem_advice,
            keeper=keeper,
            daemon_plan=bool(pid),
        )
        # A suggested command must act on this config and account.
        reports.append(dataclasses.replace(found, advice=app.hint(found.advice, account.name)))
    if store.backend == "file":
        store = dataclasses.replace(store, plaintext_leftovers=plaintext)
    return StatusReport(
        generated_at=iso(now),
        store=store,
        daemon=DaemonReport(running=pid is not None, pid=pid),
        service=service,
        service_error=service_error,
        accounts=tuple(reports),
        keyring_error=keyring_error,
        jobs=tuple(job_reports(app)),
    )


def render(report: StatusReport, *, now: float) -> str:
    """The text of `status`: each account, then the store, the daemon and the service."""
    lines = [render_text(list(report.accounts), now=now), render_jobs(list(report.jobs))]
    store, daemon, service = report.store, report.daemon, report.service
    running = f"running (pid {daemon.pid})" if daemon.pid else "not running"
    lines.append(f"\nstore: {store.backend} ({store.protection})\n")
    if store.secret_service:
        lines.append(f"secret service: {store.secret_service}\n")
    if store.plaintext_leftovers:
        lines.append(f"  unencrypted copies left behind: {', '.join(store.plaintext_leftovers)}\n")
    lines.append(f"daemon: {running}\n")
    if service is None:
        lines.append(f"service: unknown ({report.service_error})\n")
    elif not service.available:
        lines.append(f"service: {service.manager}: not running as the service manager\n")
        lines.append(f"  {service.detail}\n")
    elif service.mode is not None:
        lines.append(f"service: {service.mode} mode, {service.active}\n")
        if service.detail:
            lines.append(f"  {service.detail}\n")
        if service.problem:
            lines.append(f"  problem: {service.problem}\n")
    else:
        lines.append(f"service: not installed (`{APP} service install` sets it up)\n")
    if report.keyring_error is not None:
        label = "keyring" if store.backend == "keyring" else "file store"
        lines.append(f"{label}: unavailable: {report.keyring_error}\n")
    return "".join(lines)


def _health(app: App, reports: tuple[AccountReport, ...], *, check: bool) -> int:
    """With `--check`: 77 (and who) when any account needs `login`, else 0."""
    waiting = [report.name for report in reports if report.state in NEEDS_LOGIN]
    if not check or not waiting:
        return EXIT_OK
    app.err.write(f"{APP}: needs `login`: {', '.join(waiting)}\n")
    return EXIT_REAUTH


def _secret_service(app: App) -> str | None:
    if app.store.kind != "keyring":
        return None
    from tvmaniac_refreshd.storage.secret_service_owner import owner_summary  # noqa: PLC0415

    return owner_summary(app.environ)


def _service(app: App) -> tuple[ServiceState | None, str | None]:
    """Return the service state for `status`, or None and the reason it cannot be known."""
    try:
        return app.service_manager().state(), None
    except RefreshdError as exc:
        return None, str(exc)


VERB = Verb(
    "status",
    "Show each account's state, expiry, next refresh and last result.",
    StatusOptions,
    run,
    arguments,
    "States: logged_out, active, refresh_due, expired, reauth_required.\n"
    "The text output may change between versions; scripts should use --json.",
)
