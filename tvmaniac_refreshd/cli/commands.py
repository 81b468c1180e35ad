"""What each verb does: a few calls into the modules that own the work, and what to print."""

from __future__ import annotations

import contextlib
import getpass
import json
import sys
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from tvmaniac_refreshd.cli.access import file_store_dir as _file_store_dir
from tvmaniac_refreshd.cli.app import App
from tvmaniac_refreshd.cli.options import (
    ConfigCheckOptions,
    ConfigInitOptions,
    ExecOptions,
    GitCredentialOptions,
    LoginOptions,
    LogoutOptions,
    NoOptions,
    RefreshOptions,
    ServiceInstallOptions,
    ServiceStatusOptions,
    ServiceUninstallOptions,
    StatusOptions,
    TokenOptions,
)
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
from tvmaniac_refreshd.core.durations import format_duration
from tvmaniac_refreshd.core.errors import (
    EXIT_CONFIG,
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_REAUTH,
    EXIT_STORE_UNAVAILABLE,
    EXIT_TEMPORARY,
    ConfigError,
    LoginElsewhere,
    NotLoggedIn,
    RefreshdError,
    SessionRejected,
    StateUnwritable,
    StoreCorrupt,
    StoreUnavailable,
    UsageError,
)
from tvmaniac_refreshd.core.launchd_log import supervised_by_launchd, trim_launchd_logs
from tvmaniac_refreshd.core.locations import APP, TRAKT_APPS
from tvmaniac_refreshd.core.logs import get_logger, register_secret, shown
from tvmaniac_refreshd.core.policy import refresh_due_at
from tvmaniac_refreshd.core.times import local_time
from tvmaniac_refreshd.core.tokens import TokenDocument
from tvmaniac_refreshd.providers.factory import wording_for
from tvmaniac_refreshd.storage import quick_record
from tvmaniac_refreshd.storage.credentials import resolve_client_secret
from tvmaniac_refreshd.storage.paths import config_path, state_dir
from tvmaniac_refreshd.storage.state import AccountRecord

if TYPE_CHECKING:
    from tvmaniac_refreshd.service.base import ServiceManager

# When several accounts fail differently, the exit code reports the one most in need of a human.
SEVERITY = (EXIT_CONFIG, EXIT_STORE_UNAVAILABLE, EXIT_REAUTH, EXIT_FAILURE, EXIT_TEMPORARY)


def cmd_login(app: App, options: LoginOptions) -> int:
    from tvmaniac_refreshd.cli import login_checks  # noqa: PLC0415
    from tvmaniac_refreshd.providers.device_login import show_code, wait_for_approval  # noqa: PLC0415

    account = app.account()
    previous = login_checks.login_to_replace(app.store, account, replace=options.replace)
    _require_client_secret(app, account)
    client = app.client(account)
    by_browser = options.browser or not client.has_device_login
    login = client.browser() if by_browser else None
    if by_browser and login is None:
        wording = client.wording
        raise UsageError(f"{wording.name} offers no browser login here; {wording.relogin}")
    port = 0
    fixed = None if login is None else login.registered_redirect_uri
    if login is not None and fixed is None:
        port = options.port if options.port is not None else account.redirect_port
    elif fixed is not None:  # the provider accepts this very URI, so its port is the one
        port = _registered_port(fixed, options.port)
    # Said before anything is asked of the provider, and only what is true of this login.
    for warning in (
        login_checks.ignored_port(port=options.port, browser_login=by_browser),
        login_checks.replace_warning(account, previous),
    ):
        if warning is not None:
            app.warn(warning)
    if login is not None:
        from tvmaniac_refreshd.providers.browser_login import (  # noqa: PLC0415
            browser_login,
            default_opener,
            has_display,
        )

        opener = default_opener() if has_display(app.environ) else None
        tokens = browser_login(
            login, port=port, out=app.out, open_browser=opener, redirect_uri=fixed
        )
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
        client_id=account.client_id,
        endpoint=account.endpoint,
    )
    with app.lock(account):
        app.store.save(document)
        try:
            app.states.save(account.name, AccountRecord(last_success_at=int(app.clock())))
        except StateUnwritable as exc:
            # The tokens are stored: a "try again" here would spend another login for nothing.
            app.warn(f"logged in, but the state could not be recorded: {exc}")
    _tell_daemon(app)
    get_logger(account=account.name).info("login.finished", expires_at=iso(tokens.expires_at))
    left = format_duration(tokens.expires_at - app.clock())
    app.out.write(
        f"Logged in: account {account.name!r} is stored in {app.store.where(account.name)}; "
        "the access token is "
        f"valid for {left}.\n" + app.hint(f"Check it any time with `{APP} status`.\n")
    )
    return EXIT_OK


def _require_client_secret(app: App, account: Account) -> None:
    """Fail before a code is shown if the provider will refuse the token request without one."""
    if not account.needs_client_secret():
        return
    if resolve_client_secret(account, app.environ, app.store).value is None:
        raise ConfigError(
            app.config.source,
            [
                f"accounts.{account.name}: no client secret; store it in the keyring with "
                f"`{APP} config set-secret --account {account.name}` (or set client_secret "
                "in the file)"
            ],
        )


def _registered_port(redirect_uri: str, asked: int | None) -> int:
    """Return the port of a registered redirect URI; --port may only repeat it."""
    port = urlsplit(redirect_uri).port or 80
    if asked is not None and asked != port:
        raise UsageError(
            f"--port {asked} differs from the port of the registered redirect URI "
            f"({redirect_uri}), which the provider accepts exactly as written"
        )
    return port


def cmd_logout(app: App, options: LogoutOptions) -> int:
    account = app.account()
    with app.lock(account):
        try:
            document = app.store.load(account.name)
        except StoreCorrupt:
            document = None
            app.warn("the stored item was unreadable; deleting it without revoking")
        if document is not None:
            register_secret(document.tokens.access_token)
            register_secret(document.tokens.refresh_token)
        if document is not None and options.local:
            app.warn(
                "deleting the tokens locally without revoking them; the grant stays valid at "
                "the provider until you revoke the app there"
            )
        elif document is not None and (elsewhere := mismatch(account, document)) is not None:
            # The token and the client credentials go only where the login was made.
            raise LoginElsewhere(
                f"{elsewhere}; nothing was sent and nothing deleted. Point the config back at "
                "it to revoke it, or run `tvmaniac-refreshd logout --local` to delete it "
                f"from {app.store.where(account.name)} only",
                account=account.name,
            )
        elif document is not None:
            try:
                app.client(account).revoke(document.tokens, now=app.clock())
            except RefreshdError as exc:
                if isinstance(exc, StoreUnavailable):
                    raise
                manage = wording_for(account).manage_apps
                app.warn(
                    f"could not revoke the token at the provider ({exc}); deleting it locally "
                    f"anyway. Revoke the app by hand in {manage} if needed"
                )
        existed = app.store.delete(account.name)
        app.states.delete(account.name)
    _tell_daemon(app)
    if existed:
        app.out.write(
            f"Logged out: account {account.name!r} was removed from "
            f"{app.store.where(account.name)}.\n"
        )
    else:
        app.out.write(f"Account {account.name!r} was not logged in; nothing to do.\n")
    return EXIT_OK


def _selected(app: App, *, every: bool) -> list[Account]:
    """Every account, or the one chosen as for `token` (config.select documents the order)."""
    if every:
        return list(app.config.accounts.values())
    return [app.account()]


# States in which only a person running `login` helps (`status --check` exits 77).
NEEDS_LOGIN = ("logged_out", "reauth_required")


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


def cmd_status(app: App, options: StatusOptions) -> int:
    from tvmaniac_refreshd.daemon import instance  # noqa: PLC0415

    # Who keeps the tokens fresh is known first, so that each account says only what is true
    # now: a plan left in the state file by an earlier daemon, in timer mode, is no plan.
    pid = instance.running_pid(instance.lock_path(state_dir(app.environ), app.config.source))
    service = _service_summary(app)
    # Made first: a store this system cannot provide (encryption it lacks) is exit 78 here.
    store = _store_summary(app)
    timer = service.get("mode") == "timer" and str(service.get("active", "")).startswith("active")
    reports: list[dict[str, Any]] = []
    keyring_error: str | None = None
    now = app.clock()
    # Without a named account, status shows them all: it reads, it never refreshes.
    for account in _selected(app, every=app.account_name is None):
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
            daemon_pid=pid, planned=record.next_attempt_at is not None, timer=timer
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
    else:
        app.out.write(render_text(reports, now=now))
        _status_footer(app, store=store, pid=pid, service=service, keyring_error=keyring_error)
    # The exit code still says what failed, for scripts that only look at it.
    return (
        EXIT_STORE_UNAVAILABLE
        if keyring_error is not None
        else _health(app, reports, check=options.check)
    )


def _status_footer(
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


def _tell_daemon(app: App) -> None:
    """Tell a running daemon for this config that an account changed, so it re-plans at once."""
    from tvmaniac_refreshd.daemon import instance  # noqa: PLC0415

    pid = instance.tell(instance.lock_path(state_dir(app.environ), app.config.source))
    if pid is not None:
        get_logger().debug("daemon.told", pid=pid)


def _store_summary(app: App) -> dict[str, object]:
    """Return which store holds the tokens, where, and what protects them."""
    return {
        "backend": app.store.kind,
        "location": _file_store_dir(app),
        "protection": app.store.protection(),
    }


def cmd_token(app: App, options: TokenOptions) -> int:
    from tvmaniac_refreshd.cli.access import valid_document  # noqa: PLC0415
    from tvmaniac_refreshd.core.token_json import json_line  # noqa: PLC0415

    account = app.account()
    tokens = valid_document(app, account, options.min_valid).tokens
    if options.json:
        line = json_line(account.name, tokens.access_token, tokens.token_type, tokens.expires_at)
    else:
        line = tokens.access_token
    app.out.write(line + "\n")
    app.out.flush()
    return EXIT_OK


def cmd_exec(app: App, options: ExecOptions) -> int:
    from tvmaniac_refreshd.cli.exec_command import run_with_token  # noqa: PLC0415

    return run_with_token(app, options)


def cmd_git_credential(app: App, options: GitCredentialOptions) -> int:
    from tvmaniac_refreshd.cli.git_credential import answer  # noqa: PLC0415

    return answer(app, options)


def cmd_refresh(app: App, options: RefreshOptions) -> int:
    trim_launchd_logs(app.environ)  # the timer agent's log files, which launchd never rotates
    codes: list[int] = []
    changed = False
    accounts = _selected(app, every=options.all)
    for account in accounts:
        try:
            fresh = app.refresher(account).ensure_fresh(force=options.force)
        except SessionRejected as exc:
            # One rule, whatever the number of accounts: `--all` (the timer) skips an account
            # nobody has logged in to; a rejected session still needs a human (77).
            if isinstance(exc, NotLoggedIn) and options.all:
                app.out.write(f"{account.name}: not logged in; skipped\n")
                continue
            app.problem(f"{account.name}: {exc}", temporary=False, account=account.name)
            codes.append(exc.exit_code)
            continue
        except RefreshdError as exc:
            temporary = exc.exit_code == EXIT_TEMPORARY
            app.problem(f"{account.name}: {exc}", temporary=temporary, account=account.name)
            codes.append(exc.exit_code)
            continue
        changed = changed or fresh.refreshed
        tokens = fresh.document.tokens
        due = refresh_due_at(tokens, account.refresh, salt=account.name)
        if fresh.refreshed:
            what = "refreshed"
        elif fresh.by_other:
            what = "refreshed by another process"
        else:
            what = "not due"
        app.out.write(
            f"{account.name}: {what}; expires {local_time(tokens.expires_at)}, next refresh "
            f"due {local_time(due)} (in {format_duration(due - app.clock())})\n"
        )
    if changed:
        _tell_daemon(app)
    return next((code for code in SEVERITY if code in codes), EXIT_OK)


def cmd_run(app: App, _: NoOptions) -> int:
    from tvmaniac_refreshd.daemon.runner import (  # noqa: PLC0415
        config_watch,
        run_daemon,
        wait_for_valid_config,
    )

    if supervised_by_launchd(app.environ):
        trim_launchd_logs(app.environ)
        path = str(config_path(app.common.config, app.environ))
        with config_watch(lambda: quick_record.config_identity(path)) as wait:
            if not wait_for_valid_config(lambda: app.config, wait):
                return EXIT_OK
    # A store this system cannot provide (exit 78) stops the daemon at once, not at each retry.
    app.store  # noqa: B018
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


def cmd_service_install(app: App, options: ServiceInstallOptions) -> int:
    from tvmaniac_refreshd.service.base import exec_argv  # noqa: PLC0415

    config = app.common.config or app.environ.get("TVMANIAC_REFRESHD_CONFIG")
    if not options.dry_run:
        app.config  # noqa: B018  # refuse to install a service that would fail on its config
    manager = _service_manager(app)
    manager.install(options.mode, exec_argv(config), dry_run=options.dry_run, out=app.out)
    return EXIT_OK


def cmd_service_uninstall(app: App, options: ServiceUninstallOptions) -> int:
    _service_manager(app).uninstall(dry_run=options.dry_run, out=app.out)
    return EXIT_OK


def cmd_service_status(app: App, options: ServiceStatusOptions) -> int:
    try:
        state = _service_manager(app).state()
    except RefreshdError as exc:
        if not options.json:
            raise
        # Scripts parse stdout: the error goes inside the JSON, and the exit code still says it.
        failure = {"format_version": FORMAT_VERSION, "installed": None, "error": str(exc)}
        app.out.write(json.dumps(failure, indent=2) + "\n")
        return exc.exit_code
    if options.json:
        app.out.write(json.dumps({"format_version": FORMAT_VERSION, **state.as_dict()}, indent=2))
        app.out.write("\n")
        return EXIT_OK
    if state.mode is None:
        app.out.write(f"{state.manager}: not installed (`{APP} service install` sets it up)\n")
    else:
        app.out.write(f"{state.manager}: {state.mode} mode; {state.active}\n")
    if state.detail:
        app.out.write(f"  {state.detail}\n")
    for path in state.files:
        app.out.write(f"  {path}\n")
    if state.lingering is False:
        app.out.write("  lingering is off: the user manager stops when you log out\n")
    return EXIT_OK


def cmd_config_check(app: App, options: ConfigCheckOptions) -> int:
    from tvmaniac_refreshd.cli.doctor import run_checks  # noqa: PLC0415

    return run_checks(app, only_config=options.only_config)


def cmd_config_set_secret(app: App, _: NoOptions) -> int:
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
    where = "the keyring" if app.store.kind == "keyring" else "the file store"
    app.out.write(f"Stored the client secret of {account.name!r} in {where}.\n")
    return EXIT_OK


def cmd_config_init(app: App, options: ConfigInitOptions) -> int:
    from tvmaniac_refreshd.config.starter import (  # noqa: PLC0415
        already_exists,
        starter_config,
        write_new,
    )

    path = config_path(app.common.config, app.environ)
    if path.exists():  # asked before the client id, so nobody types it for nothing
        raise already_exists(path)
    account = app.account_name or "default"
    client_id = options.client_id
    if client_id is None:
        if not sys.stdin.isatty():
            raise UsageError(f"no terminal to ask on: pass --client-id ID (from {TRAKT_APPS})")
        client_id = input(f"Client ID of your Trakt app (from {TRAKT_APPS}): ")
    write_new(path, starter_config(client_id, account))
    where = "" if account == "default" else f" --account {account}"
    set_secret, login = (
        app.hint(f"`{APP} {verb}{where}`").strip("`") for verb in ("config set-secret", "login")
    )
    app.out.write(
        f"Wrote {path} (readable only by you).\n"
        "Next:\n"
        f"  {set_secret}   # the client secret, kept in the keyring\n"
        f"  {login}\n"
    )
    return EXIT_OK


def cmd_config_example(app: App, _: NoOptions) -> int:
    from tvmaniac_refreshd.core.shipped import EXAMPLE_CONFIG, shipped_file  # noqa: PLC0415

    found = shipped_file(*EXAMPLE_CONFIG)
    if found is None:
        raise RefreshdError("the example config is missing from this installation; reinstall it")
    app.out.write(found.read_text(encoding="utf-8"))
    return EXIT_OK
