"""What each verb does: a few calls into the modules that own the work, and what to print."""

from __future__ import annotations

import getpass
import json
import os
import sys
from typing import TYPE_CHECKING, Any

from tvmaniac_refreshd.cli.app import PROG, App
from tvmaniac_refreshd.cli.status import FORMAT_VERSION, account_report, iso, render_text
from tvmaniac_refreshd.config.settings import Account
from tvmaniac_refreshd.core.durations import format_duration
from tvmaniac_refreshd.core.errors import (
    EXIT_CONFIG,
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_REAUTH,
    EXIT_STORE_UNAVAILABLE,
    EXIT_TEMPORARY,
    ConfigError,
    NotLoggedIn,
    RefreshdError,
    SessionRejected,
    StoreCorrupt,
    StoreUnavailable,
    TransientError,
    UsageError,
)
from tvmaniac_refreshd.core.logs import get_logger, redact_text, register_secret
from tvmaniac_refreshd.core.policy import refresh_due_at
from tvmaniac_refreshd.core.tokens import TokenDocument, encode_document
from tvmaniac_refreshd.storage import quick_record
from tvmaniac_refreshd.storage.paths import config_path, state_dir
from tvmaniac_refreshd.storage.state import AccountRecord

if TYPE_CHECKING:
    from tvmaniac_refreshd.service.base import ServiceManager

# When several accounts fail differently, the exit code reports the one most in need of a human.
SEVERITY = (EXIT_CONFIG, EXIT_STORE_UNAVAILABLE, EXIT_REAUTH, EXIT_FAILURE, EXIT_TEMPORARY)


def cmd_login(app: App) -> int:
    from tvmaniac_refreshd.providers.device_login import show_code, wait_for_approval  # noqa: PLC0415

    account = app.account()
    try:
        previous = app.store.load(account.name)
    except StoreCorrupt as exc:
        if not app.args.replace:
            raise StoreCorrupt(f"{exc}; or run `login --replace` to overwrite it") from None
        previous = None
    if previous is not None:
        app.warn(f"account {account.name!r} is already logged in; this login replaces it")
    client = app.client(account)
    browser = app.args.browser or (
        account.provider == "oauth2" and account.device_authorization_url is None
    )
    if browser:
        from tvmaniac_refreshd.providers.browser_login import (  # noqa: PLC0415
            browser_login,
            default_opener,
            has_display,
        )
        from tvmaniac_refreshd.providers.oauth2 import OAuth2Client  # noqa: PLC0415

        if not isinstance(client, OAuth2Client):
            raise UsageError('--browser is for provider = "oauth2"; Trakt logs in by device code')
        port = app.args.port if app.args.port is not None else account.redirect_port
        opener = default_opener() if has_display(os.environ) else None
        tokens = browser_login(client, port=port, out=app.out, open_browser=opener)
    else:
        device = client.request_device_code(now=app.clock())
        tty = app.out.isatty()
        show_code(device, app.out, tty=tty)
        tokens = wait_for_approval(
            client,
            device,
            clock=app.clock,
            sleep=app.sleep,
            out=app.out,
            tty=tty,
        )
    register_secret(tokens.access_token)
    register_secret(tokens.refresh_token)
    document = TokenDocument(
        account=account.name,
        provider=account.provider,
        tokens=tokens,
        fingerprint=account.fingerprint(),
        obtained_at=int(app.clock()),
    )
    with app.lock(account):
        app.store.save(document)
        app.states.save(account.name, AccountRecord(last_success_at=int(app.clock())))
    get_logger(account=account.name).info("login.finished", expires_at=iso(tokens.expires_at))
    left = format_duration(tokens.expires_at - app.clock())
    app.out.write(
        f"Logged in: account {account.name!r} is stored in the keyring; the access token is "
        f"valid for {left}.\nCheck it any time with `{PROG} status`.\n"
    )
    return EXIT_OK


def cmd_logout(app: App) -> int:
    account = app.account()
    with app.lock(account):
        try:
            document = app.store.load(account.name)
        except StoreCorrupt:
            document = None
            app.warn("the keyring item was unreadable; deleting it without revoking")
        if document is not None:
            register_secret(document.tokens.access_token)
            register_secret(document.tokens.refresh_token)
            try:
                app.client(account).revoke(document.tokens, now=app.clock())
            except RefreshdError as exc:
                if isinstance(exc, StoreUnavailable):
                    raise
                app.warn(
                    f"could not revoke the token at the provider ({exc}); deleting it locally "
                    "anyway. Revoke the app by hand in your Trakt settings "
                    "(Connected apps) if needed"
                )
        existed = app.store.delete(account.name)
        app.states.delete(account.name)
    if existed:
        app.out.write(f"Logged out: account {account.name!r} was removed from the keyring.\n")
    else:
        app.out.write(f"Account {account.name!r} was not logged in; nothing to do.\n")
    return EXIT_OK


def _selected(app: App, *, every: bool) -> list[Account]:
    if every or (app.args.account is None and len(app.config.accounts) > 1):
        return list(app.config.accounts.values())
    return [app.account()]


def cmd_status(app: App) -> int:
    reports: list[dict[str, Any]] = []
    now = app.clock()
    for account in _selected(app, every=app.args.account is None):
        record = app.states.load(account.name)
        problem: str | None = None
        document: TokenDocument | None = None
        try:
            document = app.store.load(account.name)
        except StoreCorrupt as exc:
            problem = str(exc)
        if document is not None and document.fingerprint != account.fingerprint():
            problem = "the stored login was made with a different client_id or auth_url"
        reports.append(account_report(account, document, record, now=now, problem=problem))
    from tvmaniac_refreshd.daemon import instance  # noqa: PLC0415

    pid = instance.running_pid(instance.lock_path(state_dir(app.environ), app.config.source))
    daemon = {"running": pid is not None, "pid": pid}
    service = _service_summary(app)
    if app.args.json:
        payload = {
            "format_version": FORMAT_VERSION,
            "generated_at": iso(now),
            "daemon": daemon,
            "service": service,
            "accounts": reports,
        }
        app.out.write(json.dumps(payload, indent=2) + "\n")
    else:
        app.out.write(render_text(reports, now=now))
        running = f"running (pid {pid})" if pid else "not running"
        app.out.write(f"\ndaemon: {running}\n")
        if service.get("error"):
            app.out.write(f"service: unknown ({service['error']})\n")
        elif service["installed"]:
            app.out.write(f"service: {service['mode']} mode, {service['active']}\n")
        else:
            app.out.write(f"service: not installed (`{PROG} service install` sets it up)\n")
    return EXIT_OK


def cmd_token(app: App) -> int:
    config_file = quick_record.config_identity(str(config_path(app.args.config, app.environ)))
    account = app.account()
    refresher = app.refresher(account)
    min_valid = app.args.min_valid
    try:
        fresh = refresher.ensure_fresh(min_valid=min_valid)
        document = fresh.document
    except TransientError as exc:
        document = refresher.load()
        if min_valid is not None or document.tokens.expires_at <= app.clock():
            raise
        app.warn(f"{exc}; printing the current token, which is still valid")
    if min_valid is not None and document.tokens.expires_at - app.clock() < min_valid:
        app.warn(
            f"the provider issues tokens valid for {format_duration(document.tokens.expires_in)}, "
            f"less than --min-valid {format_duration(min_valid)}"
        )
    app.out.write(document.tokens.access_token + "\n")
    app.out.flush()
    if config_file is not None and not app.config.warnings:
        _remember_decision(app, account, document, config_file)
    return EXIT_OK


def _remember_decision(app: App, account: Account, document: TokenDocument, config: str) -> None:
    """Let the next plain `token` skip loading the program while this decision holds."""
    try:
        default: str | None = app.config.select(None).name
    except ConfigError:
        default = None
    try:
        quick_record.remember(
            app.environ,
            config=config,
            default_account=default,
            account=account.name,
            document_text=encode_document(document),
            fresh_until=refresh_due_at(document.tokens, account.refresh, salt=account.name),
        )
    except OSError as exc:  # only a speed-up is lost
        get_logger(account=account.name).debug("token.not_remembered", error=str(exc))


def cmd_refresh(app: App) -> int:
    codes: list[int] = []
    accounts = _selected(app, every=app.args.all)
    for account in accounts:
        try:
            fresh = app.refresher(account).ensure_fresh(force=app.args.force)
        except SessionRejected as exc:
            if isinstance(exc, NotLoggedIn) and len(accounts) > 1:
                app.out.write(f"{account.name}: not logged in; skipped\n")
                continue
            app.err.write(f"{PROG}: {account.name}: {redact_text(str(exc))}\n")
            codes.append(exc.exit_code)
            continue
        except RefreshdError as exc:
            app.err.write(f"{PROG}: {account.name}: {redact_text(str(exc))}\n")
            codes.append(exc.exit_code)
            continue
        tokens = fresh.document.tokens
        due = refresh_due_at(tokens, account.refresh, salt=account.name)
        if fresh.refreshed:
            what = "refreshed"
        elif fresh.by_other:
            what = "refreshed by another process"
        else:
            what = "not due"
        app.out.write(
            f"{account.name}: {what}; expires {iso(tokens.expires_at)}, next refresh due "
            f"{iso(due)} (in {format_duration(due - app.clock())})\n"
        )
    return next((code for code in SEVERITY if code in codes), EXIT_OK)


def cmd_run(app: App) -> int:
    from tvmaniac_refreshd.daemon.runner import run_daemon  # noqa: PLC0415

    return run_daemon(app)


def _service_manager(app: App) -> ServiceManager:
    from tvmaniac_refreshd.service import manager_for  # noqa: PLC0415

    return manager_for(app.environ)


def _service_summary(app: App) -> dict[str, object]:
    """Return the service state for `status`, or the reason it cannot be known."""
    try:
        return _service_manager(app).state().as_dict()
    except RefreshdError as exc:
        return {"installed": None, "error": str(exc)}


def cmd_service_install(app: App) -> int:
    from tvmaniac_refreshd.service.base import exec_argv  # noqa: PLC0415

    config = app.args.config or app.environ.get("TVMANIAC_REFRESHD_CONFIG")
    if not app.args.dry_run:
        app.config  # noqa: B018  # refuse to install a service that would fail on its config
    manager = _service_manager(app)
    manager.install(app.args.mode, exec_argv(config), dry_run=app.args.dry_run, out=app.out)
    return EXIT_OK


def cmd_service_uninstall(app: App) -> int:
    _service_manager(app).uninstall(dry_run=app.args.dry_run, out=app.out)
    return EXIT_OK


def cmd_service_status(app: App) -> int:
    state = _service_manager(app).state()
    if app.args.json:
        app.out.write(json.dumps({"format_version": FORMAT_VERSION, **state.as_dict()}, indent=2))
        app.out.write("\n")
        return EXIT_OK
    mode = f"{state.mode} mode" if state.mode else "not installed"
    app.out.write(f"{state.manager}: {mode}; {state.active}\n")
    if state.detail:
        app.out.write(f"  {state.detail}\n")
    for path in state.files:
        app.out.write(f"  {path}\n")
    if state.lingering is False:
        app.out.write("  lingering is off: the user manager stops when you log out\n")
    return EXIT_OK


def cmd_config_check(app: App) -> int:
    from tvmaniac_refreshd.cli.doctor import run_checks  # noqa: PLC0415

    return run_checks(app)


def cmd_config_set_secret(app: App) -> int:
    account = app.account()
    if sys.stdin.isatty():
        secret = getpass.getpass(f"Client secret for account {account.name!r}: ")
    else:
        secret = sys.stdin.readline()
    secret = secret.strip()
    if not secret:
        raise UsageError("no client secret was given (type it, or pipe it on stdin)")
    register_secret(secret)
    app.store.save_client_secret(account.name, secret)
    app.out.write(f"Stored the client secret of {account.name!r} in the keyring.\n")
    return EXIT_OK
