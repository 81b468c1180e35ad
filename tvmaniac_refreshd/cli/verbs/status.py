"""`status`: each account's state, expiry, next refresh and last result; it never refreshes."""

from __future__ import annotations

import argparse
import contextlib
import json
from dataclasses import dataclass
from typing import Any

from tvmaniac_refreshd.cli.app import App
from tvmaniac_refreshd.cli.grammar import Verb
from tvmaniac_refreshd.cli.status import (
    FORMAT_VERSION,
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

# States in which only a person running `login` helps (`status --check` exits 77).
NEEDS_LOGIN = ("logged_out", "reauth_required")


@dataclass(frozen=True)
class StatusOptions:
    json: bool = False
    check: bool = False  # exit 77 if any account needs `login`


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
    if not options.json:
        return _status(app, options)
    try:
        return _status(app, options)
    except RefreshdError as exc:
        # Scripts parse stdout: what failed goes inside the JSON, and the exit code says it.
        failure: dict[str, object] = {"format_version": FORMAT_VERSION, "error": shown(str(exc))}
        if isinstance(exc, ConfigError):
            failure["problems"] = [shown(problem) for problem in exc.problems]
        app.out.write(json.dumps(failure, indent=2) + "\n")
        return exc.exit_code


def _status(app: App, options: StatusOptions) -> int:
    # Who keeps the tokens fresh is known first, so that each account says only what is true
    # now: a plan left in the state file by an earlier daemon, in timer mode, is no plan.
    pid = app.daemon_pid()
    service = service_summary(app)
    # Made first: a store this system cannot provide (encryption it lacks) is exit 78 here.
    store = _store_summary(app)
    timer = service.get("mode") == "timer" and str(service.get("active", "")).startswith("active")
    reports: list[dict[str, Any]] = []
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
                unknown_report(account, record, reason=keyring_error, daemon_plan=bool(pid))
            )
            continue
        _know_secrets(app, account, document, record)
        if document is not None and (problem := mismatch(account, document)) is not None:
            problem_advice = f"Nothing was sent. To use this config, {way_out(account)}."
        keeper = keeper_advice(
            daemon_pid=pid,
            planned=record.next_attempt_at is not None,
            timer=timer,
            installable=service.get("available") is not False,
        )
        reports.append(
            account_report(
                account,
                document,
                record,
                now=now,
                problem=problem,
                problem_advice=problem_advice,
                keeper=keeper,
                daemon_plan=bool(pid),
            )
        )
    for report in reports:  # a suggested command must act on this config and account
        report["advice"] = app.hint(report["advice"], account=report["name"])
    daemon = {"running": pid is not None, "pid": pid}
    if options.json:
        payload: dict[str, object] = {
            "format_version": FORMAT_VERSION,
            "generated_at": iso(now),
            "store": store,
            "daemon": daemon,
            "service": service,
            "accounts": reports,
        }
        if keyring_error is not None:
            payload["keyring"] = {"available": False, "error": keyring_error}
        app.out.write(json.dumps(payload, indent=2) + "\n")
    elif not options.check or app.common.verbose:  # a health check is quiet unless -v
        app.out.write(render_text(reports, now=now))
        _footer(app, store=store, pid=pid, service=service, keyring_error=keyring_error)
    # The exit code still says what failed, for scripts that only look at it.
    return (
        EXIT_STORE_UNAVAILABLE
        if keyring_error is not None
        else _health(app, reports, check=options.check)
    )


def _footer(
    app: App,
    *,
    store: dict[str, object],
    pid: int | None,
    service: dict[str, object],
    keyring_error: str | None,
) -> None:
    """The lines under the accounts: the store, the daemon, the service."""
    running = f"running (pid {pid})" if pid else "not running"
    app.out.write(f"\nstore: {store['backend']} ({store['protection']})\n")
    app.out.write(f"daemon: {running}\n")
    if service.get("error"):
        app.out.write(f"service: unknown ({service['error']})\n")
    elif service.get("available") is False:
        app.out.write(f"service: {service['manager']}: not running as the service manager\n")
        app.out.write(f"  {service['detail']}\n")
    elif service["installed"]:
        app.out.write(f"service: {service['mode']} mode, {service['active']}\n")
        if service.get("detail"):
            app.out.write(f"  {service['detail']}\n")
    else:
        app.out.write(app.hint(f"service: not installed (`{APP} service install` sets it up)\n"))
    if keyring_error is not None:
        label = "keyring" if store["backend"] == "keyring" else "file store"
        app.out.write(f"{label}: unavailable: {keyring_error}\n")


def _health(app: App, reports: list[dict[str, Any]], *, check: bool) -> int:
    """With `--check`: 77 (and who) when any account needs `login`, else 0."""
    waiting = [report["name"] for report in reports if report["state"] in NEEDS_LOGIN]
    if not check or not waiting:
        return EXIT_OK
    app.err.write(f"{APP}: needs `login`: {', '.join(waiting)}\n")
    return EXIT_REAUTH


def _store_summary(app: App) -> dict[str, object]:
    """Return which store holds the tokens, where, and what protects them."""
    return {
        "backend": app.store.kind,
        "location": file_store_dir(app),
        "protection": app.store.protection(),
    }


def service_summary(app: App) -> dict[str, object]:
    """Return the service state for `status`, or the reason it cannot be known."""
    try:
        return app.service_manager().state().as_dict()
    except RefreshdError as exc:
        return {"installed": None, "error": str(exc)}


VERB = Verb(
    "status",
    "Show each account's state, expiry, next refresh and last result.",
    StatusOptions,
    run,
    arguments,
    "States: logged_out, active, refresh_due, expired, reauth_required.\n"
    "The text output may change between versions; scripts should use --json.",
)
