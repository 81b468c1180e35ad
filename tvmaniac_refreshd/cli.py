"""The command line: parse arguments, wire the modules together, map errors to exit codes.

No business logic lives here; each verb is a few calls into the modules that own the work.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TextIO

from tvmaniac_refreshd import __version__, quick_token
from tvmaniac_refreshd.config import Account, Config, load_config
from tvmaniac_refreshd.credentials import resolve_client_secret
from tvmaniac_refreshd.durations import format_duration, parse_duration
from tvmaniac_refreshd.errors import (
    EXIT_CONFIG,
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_REAUTH,
    EXIT_STORE_UNAVAILABLE,
    EXIT_TEMPORARY,
    EXIT_USAGE,
    ConfigError,
    NotLoggedIn,
    RefreshdError,
    SessionRejected,
    StoreCorrupt,
    StoreUnavailable,
    TransientError,
    UsageError,
)
from tvmaniac_refreshd.logs import configure_logging, get_logger, redact_text, register_secret
from tvmaniac_refreshd.paths import config_path, lock_dir, state_dir
from tvmaniac_refreshd.policy import refresh_due_at
from tvmaniac_refreshd.refresher import Refresher
from tvmaniac_refreshd.secret_service import adopt_session_bus
from tvmaniac_refreshd.state import AccountRecord, StateFiles
from tvmaniac_refreshd.status import FORMAT_VERSION, account_report, iso, render_text
from tvmaniac_refreshd.store import KeyringStore, default_backend
from tvmaniac_refreshd.tokens import TokenDocument, encode_document

if TYPE_CHECKING:
    import httpx

    from tvmaniac_refreshd.oauth import TraktClient
    from tvmaniac_refreshd.oauth2 import OAuth2Client
    from tvmaniac_refreshd.service import ServiceManager

PROG = "tvmaniac-refreshd"
# When several accounts fail differently, the exit code reports the one most in need of a human.
SEVERITY = (EXIT_CONFIG, EXIT_STORE_UNAVAILABLE, EXIT_REAUTH, EXIT_FAILURE, EXIT_TEMPORARY)

DESCRIPTION = """\
Keeps a Trakt.tv OAuth session alive: the tokens live in the OS keyring and are refreshed
before they expire, by a systemd/launchd service or by these commands.

Typical first use:
  tvmaniac-refreshd config check        # is the config and the keyring usable?
  tvmaniac-refreshd login               # device-code login; approve the code in a browser
  tvmaniac-refreshd status              # when does the token expire, when is it refreshed
  tvmaniac-refreshd service install     # keep it fresh in the background (systemd/launchd)
  curl -H "Authorization: Bearer $(tvmaniac-refreshd token)" ...   # in scripts
"""

EXIT_CODES = """\
exit codes:
  0   success (including "nothing was due")
  1   other failure
  2   usage error
  69  the keyring is unavailable or locked
  75  temporary failure (network, 429, 5xx, timeout): try again later; tokens kept
  77  the provider rejected the session: run `login`
  78  invalid configuration
"""


def _duration_arg(text: str) -> int:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser with every verb and its help."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=DESCRIPTION,
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config",
        metavar="PATH",
        help="config file (default: $TVMANIAC_REFRESHD_CONFIG, else "
        "$XDG_CONFIG_HOME/tvmaniac-refreshd/config.toml)",
    )
    parser.add_argument(
        "--account", metavar="NAME", help="account to act on (default: the only one, or 'default')"
    )
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log output on stderr"
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)

    def verb(name: str, summary: str, details: str = "") -> argparse.ArgumentParser:
        return verbs.add_parser(
            name,
            help=summary,
            description=f"{summary}\n\n{details}".strip(),
            epilog=EXIT_CODES,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    login = verb(
        "login",
        "Log in with the device-code flow and store the tokens in the keyring.",
        "Prints a URL and a code (and a QR code on a terminal); approve the code in any "
        "browser.\nThe command waits, polling at the provider's interval, until you approve "
        "or the code expires.",
    )
    login.add_argument(
        "--browser",
        action="store_true",
        help="oauth2 accounts: log in through the browser (authorization code with PKCE and a "
        "loopback redirect) instead of a device code",
    )
    login.add_argument(
        "--port",
        type=int,
        metavar="N",
        help="with --browser: listen for the redirect on this port (e.g. to forward it over "
        "ssh -L); default: the account's redirect_port, else a free one",
    )
    login.add_argument(
        "--replace",
        action="store_true",
        help="overwrite a keyring item that is damaged or was written by another program",
    )
    verb(
        "logout",
        "Revoke the token at the provider and delete it from the keyring.",
        "If the provider cannot be reached, the tokens are still deleted locally, a warning "
        "is printed, and the exit code is 0.",
    )
    status = verb(
        "status",
        "Show each account's state, expiry, next refresh and last result.",
        "States: logged_out, active, refresh_due, expired, reauth_required.\n"
        "The text output may change between versions; scripts should use --json.",
    )
    status.add_argument(
        "--json", action="store_true", help='machine-readable output ("format_version": 1)'
    )
    token = verb(
        "token",
        "Print a valid access token, refreshing it first if it is due.",
        "Only the token and a newline go to stdout, so $(tvmaniac-refreshd token) is safe.\n"
        "Without --min-valid, a token due for refresh is refreshed; if that fails for a "
        "passing\nreason, the still-valid token is printed with a warning on stderr.",
    )
    token.add_argument(
        "--min-valid",
        metavar="DUR",
        type=_duration_arg,
        help="refresh first if less than DUR (e.g. 90s, 15m, 5h) remains; fail with 75 if "
        "that cannot be met",
    )
    verb(
        "run",
        "Run the daemon in the foreground (the service manager starts this).",
        "Keeps every account refreshed: each is planned from its token's lifetime, retried\n"
        "with capped exponential backoff after passing failures, and left alone once the\n"
        "provider rejects it (until `login`). Logins and logouts done meanwhile are noticed.\n\n"
        "signals: SIGHUP re-reads the config (an invalid one is rejected and the old one kept);\n"
        "SIGTERM or SIGINT stop it within a few seconds.\n"
        "Under systemd it speaks sd_notify (READY, STATUS, WATCHDOG, RELOADING, STOPPING) and\n"
        "logs to journald with fields such as ACCOUNT, EVENT and REFRESH_RESULT.",
    )
    refresh = verb(
        "refresh",
        "Refresh each selected account that is due, then exit (what the timer runs).",
    )
    refresh.add_argument("--force", action="store_true", help="refresh even if not due")
    refresh.add_argument(
        "--all", action="store_true", help="every configured account, not just --account"
    )
    service = verb(
        "service",
        "Install, remove or inspect the OS service (systemd user units, launchd agent).",
        "daemon mode: a long-running `run` (systemd Type=notify, or a launchd KeepAlive agent).\n"
        "timer mode: `refresh --all` every hour (systemd timer with Persistent=true, or launchd\n"
        "StartCalendarInterval), for machines where nothing should stay resident.\n"
        "Then control it with systemctl --user / launchctl; logs: journalctl --user -u "
        "'tvmaniac-refreshd*'.",
    )
    service_verbs = service.add_subparsers(dest="service_verb", metavar="ACTION", required=True)
    install = service_verbs.add_parser(
        "install",
        help="install and start the service; running it again updates it (idempotent)",
    )
    install.add_argument(
        "--mode",
        choices=("daemon", "timer"),
        default="daemon",
        help="daemon (default) or an hourly timer; switching replaces the other mode",
    )
    install.add_argument(
        "--dry-run", action="store_true", help="print the files and commands; change nothing"
    )
    uninstall = service_verbs.add_parser(
        "uninstall", help="stop and remove the service; fine if it is not installed"
    )
    uninstall.add_argument(
        "--dry-run", action="store_true", help="print what would be removed; change nothing"
    )
    service_status = service_verbs.add_parser(
        "status", help="is it installed, in which mode, and what the service manager says"
    )
    service_status.add_argument("--json", action="store_true", help="machine-readable output")
    config = verb("config", "Check the configuration, or store a client secret.")
    config_verbs = config.add_subparsers(dest="config_verb", metavar="ACTION", required=True)
    config_verbs.add_parser(
        "check",
        help="validate the config and the environment, and say how to fix each problem",
    )
    config_verbs.add_parser(
        "set-secret",
        help="read the account's client secret from the terminal (or stdin) into the keyring",
    )
    return parser


class App:
    """The wiring for one command: config, keyring, state files, clock, HTTP."""

    def __init__(
        self,
        args: argparse.Namespace,
        *,
        environ: Mapping[str, str],
        out: TextIO,
        err: TextIO,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.args = args
        self.environ = environ
        self.out = out
        self.err = err
        self.clock = clock
        self.sleep = sleep
        self._config: Config | None = None
        self._store: KeyringStore | None = None
        self._http: httpx.Client | None = None
        self._http_lock = threading.Lock()

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(config_path(self.args.config, self.environ))
            for warning in self._config.warnings:
                self.warn(warning)
        return self._config

    @property
    def store(self) -> KeyringStore:
        if self._store is None:
            environ = self.environ
            self._store = KeyringStore(self.config.store, lambda: default_backend(environ))
        return self._store

    @property
    def states(self) -> StateFiles:
        return StateFiles(state_dir(self.environ))

    def warn(self, message: str) -> None:
        self.err.write(f"{PROG}: warning: {redact_text(message)}\n")

    def account(self) -> Account:
        return self.config.select(self.args.account)

    def client(self, account: Account) -> TraktClient | OAuth2Client:
        from tvmaniac_refreshd.oauth import TraktClient, make_http_client  # noqa: PLC0415
        from tvmaniac_refreshd.oauth2 import OAuth2Client  # noqa: PLC0415

        with self._http_lock:  # the daemon's worker threads share one connection pool
            if self._http is None:
                self._http = make_http_client(self.config.http)
        secret = resolve_client_secret(account, self.environ, self.store)
        if account.provider == "oauth2":
            return OAuth2Client(self._http, account, secret.value)
        return TraktClient(self._http, account, secret.value)

    def refresher(self, account: Account) -> Refresher:
        return Refresher(
            account,
            store=self.store,
            states=self.states,
            lock_dir=lock_dir(self.environ),
            lock_timeout=self.config.store.lock_timeout,
            client=lambda: self.client(account),
            clock=self.clock,
        )

    @contextlib.contextmanager
    def lock(self, account: Account) -> Iterator[None]:
        from tvmaniac_refreshd.store import account_lock  # noqa: PLC0415

        with account_lock(
            lock_dir(self.environ), account.name, timeout=self.config.store.lock_timeout
        ):
            yield

    def adopt(self, config: Config) -> None:
        """Use ``config`` from now on (the daemon after SIGHUP)."""
        self._config = config

    def close(self) -> None:
        if self._http is not None:
            self._http.close()


def cmd_login(app: App) -> int:
    from tvmaniac_refreshd.login import show_code, wait_for_approval  # noqa: PLC0415

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
        from tvmaniac_refreshd.browser_login import (  # noqa: PLC0415
            browser_login,
            default_opener,
            has_display,
        )
        from tvmaniac_refreshd.oauth2 import OAuth2Client  # noqa: PLC0415

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
    from tvmaniac_refreshd import instance  # noqa: PLC0415

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
    config_file = quick_token.config_identity(str(config_path(app.args.config, app.environ)))
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
        quick_token.remember(
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
    from tvmaniac_refreshd.runner import run_daemon  # noqa: PLC0415

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
    from tvmaniac_refreshd.service import exec_argv  # noqa: PLC0415

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
    from tvmaniac_refreshd.doctor import run_checks  # noqa: PLC0415

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


VERBS: dict[str, Callable[[App], int]] = {
    "login": cmd_login,
    "logout": cmd_logout,
    "status": cmd_status,
    "token": cmd_token,
    "refresh": cmd_refresh,
    "run": cmd_run,
    "service install": cmd_service_install,
    "service uninstall": cmd_service_uninstall,
    "service status": cmd_service_status,
    "config check": cmd_config_check,
    "config set-secret": cmd_config_set_secret,
}


def main(
    argv: Sequence[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Run the command line and return its exit code; never raise, never show a traceback."""
    out = out or sys.stdout
    err = err or sys.stderr
    if environ is None:
        adopt_session_bus(os.environ)
        environ = os.environ
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse has printed usage or help
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    verb = args.verb
    if verb in ("config", "service"):
        verb = f"{verb} {getattr(args, verb + '_verb')}"
    # `token` output is read by scripts: only warnings go to stderr unless -v.
    configure_logging(
        args.verbose,
        stream=err,
        quiet=verb in ("token", "status"),
        daemon=verb == "run",
        environ=environ,
    )
    app = App(args, environ=environ, out=out, err=err)
    try:
        return VERBS[verb](app)
    except RefreshdError as exc:
        err.write(f"{PROG}: {redact_text(str(exc))}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        err.write(f"{PROG}: interrupted\n")
        return 130
    except Exception as exc:  # a bug: report it in one line, without a traceback or secret
        if args.verbose:
            import traceback  # noqa: PLC0415

            err.write(redact_text(traceback.format_exc()))
        err.write(
            f"{PROG}: internal error: {redact_text(f'{type(exc).__name__}: {exc}')} "
            "(please report it; -v shows details)\n"
        )
        return EXIT_FAILURE
    finally:
        app.close()
