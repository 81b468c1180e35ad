"""`config check`: validate the config and the environment, and say how to fix each problem."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tvmaniac_refreshd.cli.app import App
from tvmaniac_refreshd.cli.grammar import Verb
from tvmaniac_refreshd.config.binding import mismatch, way_out
from tvmaniac_refreshd.config.settings import load_config
from tvmaniac_refreshd.core.errors import (
    EXIT_CONFIG,
    EXIT_OK,
    EXIT_REAUTH,
    EXIT_STORE_UNAVAILABLE,
    ConfigError,
    RefreshdError,
    StoreUnavailable,
)
from tvmaniac_refreshd.core.locations import APP
from tvmaniac_refreshd.core.logs import shown
from tvmaniac_refreshd.storage.credentials import resolve_client_secret
from tvmaniac_refreshd.storage.file_store import leftover_advice, plaintext_leftovers
from tvmaniac_refreshd.storage.layout import disagreements

if TYPE_CHECKING:
    from collections.abc import Callable

    from tvmaniac_refreshd.config.settings import Config


@dataclass(frozen=True)
class ConfigCheckOptions:
    only_config: bool = False  # the config file alone: what a service reload runs first


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--only-config",
        action="store_true",
        help="check the config file alone (what `systemctl --user reload` runs first)",
    )


# Any earlier wall clock is certainly wrong, and would make every token look fresh or expired.
EARLIEST_SANE_TIME = dt.datetime(2025, 1, 1, tzinfo=dt.UTC).timestamp()


class _Report:
    """Prints one line per check and remembers the exit codes of the failures."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.codes: list[int] = []

    def line(
        self,
        ok: bool | None,
        subject: str,
        detail: str,
        code: int = 1,
        *,
        account: str | None = None,
    ) -> None:
        mark = {True: "ok  ", False: "FAIL", None: "warn"}[ok]
        self.app.out.write(f"{mark} {subject}: {shown(self.app.hint(detail, account))}\n")
        if ok is False:
            self.codes.append(code)

    def exit_code(self) -> int:
        return max(self.codes, default=EXIT_OK)


def _check_config(report: _Report) -> Config | None:
    app = report.app
    path = app.config_location
    try:
        # Loaded here, not through app.config, whose warnings this report lists itself.
        config = load_config(path)
    except ConfigError as exc:
        report.line(False, "config", f"{path} is invalid:", EXIT_CONFIG)
        for problem in exc.problems:
            app.out.write(f"       - {shown(app.hint(problem))}\n")
        return None
    app.adopt(config)  # so that the hints know how many accounts there are
    names = ", ".join(config.accounts)
    count = len(config.accounts)
    report.line(True, "config", f"{path} ({count} account{'' if count == 1 else 's'}: {names})")
    for warning in config.warnings:
        report.line(None, "config", warning)
    app.adopt(config)
    return config


def _check_environment(report: _Report, config: Config | None) -> None:
    app = report.app
    report.line(True, "state directory", f"{app.layout.state} (every caller of this user)")
    for note in disagreements(app.environ):
        report.line(None, "state directory", note)
    # A file store needs no session bus: that is what it is for.
    uses_keyring = config is None or config.store.backend == "keyring"
    if sys.platform.startswith("linux") and uses_keyring:
        bus = app.environ.get("DBUS_SESSION_BUS_ADDRESS")
        if bus:
            report.line(True, "session bus", bus)
        else:
            report.line(
                False,
                "session bus",
                "DBUS_SESSION_BUS_ADDRESS is unset and $XDG_RUNTIME_DIR/bus does not exist; "
                "log in to a desktop session, or install dbus-user-session",
                EXIT_STORE_UNAVAILABLE,
            )
    # Here, not at the top: every command builds the parser from this module, and the event
    # sources' modules cost each of them 3-4 ms.
    from tvmaniac_refreshd.daemon.events import probe as probe_events  # noqa: PLC0415

    complete, sources = probe_events(app.environ)
    report.line(True if complete else None, "events", sources)
    if sys.platform == "darwin":
        from tvmaniac_refreshd.service import manager_for  # noqa: PLC0415
        from tvmaniac_refreshd.service.launchd import Launchd  # noqa: PLC0415
        from tvmaniac_refreshd.storage.macos_keychain import running_executable  # noqa: PLC0415

        manager = manager_for(app.environ)
        domain = manager.agent_domain() if isinstance(manager, Launchd) else None
        home = str(app.environ.get("HOME", ""))
        ok, detail = macos_notification_check(_agent_which, home, domain)
        report.line(ok, "notifications", detail)
        # What Keychain Access lists under Access Control, and what `codesign -dv` should check.
        report.line(True, "keychain program", running_executable())
    clock = app.clock()
    if clock < EARLIEST_SANE_TIME:
        fix = (
            "turn on System Settings > General > Date & Time > Set time automatically"
            if sys.platform == "darwin"
            else "enable NTP (timedatectl)"
        )
        report.line(False, "clock", f"the system clock is before 2025; {fix}")
    else:
        now = dt.datetime.fromtimestamp(clock, tz=dt.UTC)
        report.line(True, "clock", f"{now:%Y-%m-%d %H:%M:%S} UTC")


def macos_notification_check(
    which: Callable[[str], str | None], home: str, domain: str | None = None
) -> tuple[bool | None, str]:
    """Return how the daemon's desktop alerts will reach a Mac user, and what to do if not.

    What can be known from here: the domain the agent is loaded in (``user/UID`` can post
    nothing), whether terminal-notifier is on the agent's PATH, and whether Script Editor
    (osascript's sender) has an entry in the Notifications settings at all. Whether a banner
    really shows cannot be asked; hooks are the reliable path.
    """
    from tvmaniac_refreshd.daemon.alerts import (  # noqa: PLC0415
        BACKGROUND_CAVEAT,
        OSASCRIPT_CAVEAT,
        script_editor_listed,
    )

    if domain is not None and domain.startswith("user/"):
        return None, f"unavailable: {BACKGROUND_CAVEAT}"
    found = which("terminal-notifier")
    if found:
        return None, (
            f"terminal-notifier ({found}), best effort: unmaintained since 2017, with reports "
            "of no banners on macOS 14; if none shows, allow terminal-notifier in System "
            "Settings > Notifications, or set a hook (on_reauth_required), the reliable path"
        )
    if not which("osascript"):
        return None, "no notifier found; use a hook (on_reauth_required) to be told"
    listed = script_editor_listed(home)
    if listed is False:
        return None, (
            "Script Editor has never been allowed to notify, so osascript alerts are dropped "
            f"silently. {OSASCRIPT_CAVEAT}"
        )
    return None, OSASCRIPT_CAVEAT


def _agent_which(name: str) -> str | None:
    """``shutil.which`` over the PATH the launchd agent gets (its plist)."""
    import shutil  # noqa: PLC0415

    from tvmaniac_refreshd.service.launchd import AGENT_PATH  # noqa: PLC0415

    return shutil.which(name, path=AGENT_PATH)


def _check_accounts(report: _Report, config: Config) -> None:
    app = report.app
    if app.store.kind == "keyring":
        from tvmaniac_refreshd.storage import secret_service_owner as ss  # noqa: PLC0415

        owner = ss.owner_summary(app.environ)
        if owner is not None:
            report.line(owner != ss.NO_OWNER or None, "secret service", owner)
    subject = f"store ({app.store.kind})"
    try:
        report.line(True, subject, f"{app.store.backend_name()}; {app.store.protection()}")
    except StoreUnavailable as exc:
        report.line(False, subject, str(exc), exc.exit_code)
        return
    for account in config.accounts.values():
        subject = f"account {account.name}"
        try:
            secret = resolve_client_secret(account, app.environ, app.store)
            document = app.store.load(account.name)
        except RefreshdError as exc:
            report.line(False, subject, str(exc), exc.exit_code, account=account.name)
            continue
        if not account.needs_client_secret():
            where = "a public client (no client secret)"
        else:
            where = f"client secret from {secret.source}"
        elsewhere = None if document is None else mismatch(account, document)
        if elsewhere is not None:
            # `token` and `refresh` refuse such a login (77): say so here, and whose it is.
            report.line(
                False,
                subject,
                f"{account.endpoint}; {where}; {elsewhere}. To use this config, {way_out(account)}",
                EXIT_REAUTH,
                account=account.name,
            )
            continue
        login = "logged in" if document is not None else "not logged in (`tvmaniac-refreshd login`)"
        report.line(True, subject, f"{account.endpoint}; {where}; {login}", account=account.name)
        leftovers = plaintext_leftovers(app.store, account.name)
        if leftovers:
            report.line(
                None, subject, leftover_advice(account.name, leftovers), account=account.name
            )
        if secret.value is None and account.needs_client_secret():
            report.line(
                None,
                subject,
                "no client secret: `login` and refreshes will be refused; store it with "
                f"`tvmaniac-refreshd config set-secret --account {account.name}`",
                account=account.name,
            )


def _check_service(report: _Report) -> None:
    from tvmaniac_refreshd.service import manager_for  # noqa: PLC0415

    try:
        state = manager_for(report.app.environ).state()
    except RefreshdError as exc:
        report.line(None, "service", str(exc))
        return
    if not state.available:
        report.line(
            None, "service", f"{state.manager}: not running as the service manager; {state.detail}"
        )
        return
    if state.mode is None:
        report.line(
            None, "service", f"{state.manager}: not installed (`{APP} service install` sets it up)"
        )
        return
    ok = not state.active.startswith("failed")
    report.line(
        ok, "service", f"{state.manager}: {state.mode} mode, {state.active}; {state.detail}"
    )
    if state.problem:
        report.line(False, "service", state.problem)
    for warning in state.warnings:
        report.line(None, "service", warning)
    if state.lingering is False:
        report.line(
            None,
            "service",
            "lingering is off: the service stops when you log out (loginctl enable-linger)",
        )


def run_checks(app: App, *, only_config: bool = False) -> int:
    """Print one line per check and return the exit code of the worst problem."""
    report = _Report(app)
    config = _check_config(report)
    if only_config:
        # The unit's ExecReload=: a locked keyring must not fail a reload of a good config.
        return report.exit_code()
    _check_environment(report, config)
    _check_service(report)
    if config is not None:
        _check_accounts(report, config)
    return report.exit_code()


def run(app: App, options: ConfigCheckOptions) -> int:
    return run_checks(app, only_config=options.only_config)


VERB = Verb(
    "config check",
    "validate the config and the environment, and say how to fix each problem",
    ConfigCheckOptions,
    run,
    arguments,
)
