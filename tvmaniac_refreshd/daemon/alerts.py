"""Telling the user that an account needs them: desktop notifications and hook commands.

``Reminders`` decides, from the time passed in, whether an event is told at all; ``Alerter``
does the telling on one worker thread, so the daemon never waits on a slow hook or notifier.

Where a hook runs under systemd (outside our units' sandbox) is hook_sandbox.py's to say.
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from tvmaniac_refreshd.config.settings import Alerts
from tvmaniac_refreshd.core.durations import format_duration
from tvmaniac_refreshd.core.locations import APP
from tvmaniac_refreshd.core.logs import get_logger, redact_text
from tvmaniac_refreshd.daemon.hook_sandbox import (
    SYSTEMD_RUN_SLACK,
    hook_unit_name,
    outside_sandbox,
    sandbox_hint,
)

if TYPE_CHECKING:
    from structlog.typing import FilteringBoundLogger

NOTIFY_TIMEOUT = 10  # a notifier stuck on a dead D-Bus session must not hold up later alerts
OUTPUT_LIMIT = 500  # hook output is for debugging only; a chatty hook must not flood the log

Runner = Callable[..., subprocess.CompletedProcess[bytes]]
Job = Callable[[], None]


def refreshed_message(provider: str) -> str:
    """The REFRESHED alert's text, the same from the daemon and from a timer's pass."""
    return f"The {provider} token was refreshed."


def failing_message(seconds: float, error: object) -> str:
    """The FAILING alert's text, the same from the daemon and from a timer's pass."""
    return f"Refreshing has failed for {format_duration(seconds)}: {error}"


class AlertEvent(StrEnum):
    """What happened to an account; the value is what hooks see."""

    REFRESHED = "refreshed"
    REAUTH_REQUIRED = "reauth_required"
    FAILING = "error"


_STANDING = (AlertEvent.REAUTH_REQUIRED, AlertEvent.FAILING)


class ReminderMemory(Protocol):
    """Decides whether an event is told now (``Reminders`` in memory, or a state file's)."""

    def should_tell(
        self, account: str, event: AlertEvent, remind_every: float, now: float
    ) -> bool: ...


class Reminders:
    """Remembers when each (account, event) was last told; knows nothing of the clock."""

    def __init__(self) -> None:
        self._told: dict[tuple[str, AlertEvent], float] = {}

    def should_tell(self, account: str, event: AlertEvent, remind_every: float, now: float) -> bool:
        """Return whether to tell ``event`` now, and remember it if so."""
        if event is AlertEvent.REFRESHED:
            # Recovery ends the standing alerts, so the next failure is news again.
            for standing in _STANDING:
                self._told.pop((account, standing), None)
            return True
        last = self._told.get((account, event))
        # A clock that went backwards (now < last) tells rather than staying silent for long.
        if last is not None and 0 <= now - last < remind_every:
            return False
        self._told[(account, event)] = now
        return True


# Process groups of hooks running now, so that a stopping daemon does not leave them behind.
_running_groups: set[int] = set()
_groups_lock = threading.Lock()


def kill_running_hooks() -> None:
    """Kill every hook still running (the daemon is exiting and will not wait for them)."""
    with _groups_lock:
        groups = list(_running_groups)
    for group in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signal.SIGKILL)


def run_in_own_group(
    args: Sequence[str], *, timeout: float, env: Mapping[str, str] | None = None, **_: object
) -> subprocess.CompletedProcess[bytes]:
    """Run ``args`` like ``subprocess.run``, but a timeout kills its whole process group.

    A hook is often a shell script; killing only the shell would leave its children running.
    """
    with subprocess.Popen(
        list(args),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=True,
    ) as process:
        with _groups_lock:
            _running_groups.add(process.pid)
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            # Not communicate(): a child that left the group could hold the pipes open forever.
            process.wait()
            raise
        finally:
            with _groups_lock:
                _running_groups.discard(process.pid)
    return subprocess.CompletedProcess(list(args), process.returncode, out, err)


def _next_step(account: str, verb: str) -> str:
    selector = "" if account == "default" else f" --account {account}"
    return f"Run: {APP}{selector} {verb}"


def _output(data: bytes | None) -> str:
    # Without the final newline, which would end the journal's MESSAGE in a dangling line.
    return (data or b"").decode(errors="replace")[:OUTPUT_LIMIT].rstrip()


def _osascript_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# What `config check`, the log and the docs say about osascript's notifications.
OSASCRIPT_CAVEAT = (
    "osascript's notifications come from Script Editor, and macOS drops them silently "
    "(osascript still exits 0) unless Script Editor may post notifications. Script Editor "
    "appears in System Settings > Notifications only once `display notification` has been run "
    "inside Script Editor.app and allowed there: open Script Editor, run "
    '`display notification "test"`, click Allow. terminal-notifier '
    "(`brew install terminal-notifier`) is best effort: unmaintained since 2017, with reports "
    "of no banners on macOS 14. A hook (on_reauth_required) is the reliable path"
)
# Under launchd in the user/UID domain (installed with no GUI login): nothing reaches a screen.
BACKGROUND_CAVEAT = (
    "the agent runs in the user/UID launchd domain (installed with no GUI login), outside the "
    "login session, where it can post no notification; set a hook (on_reauth_required), or "
    "run `tvmaniac-refreshd service install` at the Mac to move the agent into gui/UID"
)
SCRIPT_EDITOR = "com.apple.ScriptEditor2"


def macos_notification(
    which: Callable[[str], str | None], account: str, title: str, body: str
) -> list[str] | None:
    """Return the command that posts a notification on macOS, or None if there is none.

    terminal-notifier first: it posts as its own app, so its permission is its own. osascript
    otherwise, which posts as Script Editor (see OSASCRIPT_CAVEAT).
    """
    line = body.replace("\n", " ")  # one line: a banner shows no second line anyway
    if which("terminal-notifier"):
        # -group: a reminder replaces the previous banner of the account instead of piling up.
        return [
            "terminal-notifier",
            "-title",
            title,
            "-message",
            line,
            "-group",
            f"{APP}.{account}",
        ]
    if which("osascript"):
        script = (
            f"display notification {_osascript_quote(line)} with title {_osascript_quote(title)}"
        )
        return ["osascript", "-e", script]
    return None


def script_editor_listed(home: str) -> bool | None:
    """Return whether Script Editor has an entry in the Notifications settings.

    Absent means macOS has never let it notify, so every osascript alert is dropped. Present
    says only that it asked: whether it is allowed is a bit in an undocumented field, not read
    here. None when the settings file cannot be read (not a Mac, or a format we do not know).
    """
    import plistlib  # noqa: PLC0415

    path = f"{home}/Library/Preferences/com.apple.ncprefs.plist"
    try:
        with open(path, "rb") as handle:
            prefs = plistlib.load(handle)
    except (OSError, ValueError, plistlib.InvalidFileException):
        return None
    apps = prefs.get("apps") if isinstance(prefs, dict) else None
    if not isinstance(apps, list):
        return None
    return any(isinstance(app, dict) and app.get("bundle-id") == SCRIPT_EDITOR for app in apps)


class Alerter:
    """Runs hooks and desktop notifications one at a time, off the caller's thread."""

    def __init__(
        self,
        *,
        runner: Runner = run_in_own_group,
        which: Callable[[str], str | None] = shutil.which,
        platform: str = sys.platform,
        desktop: bool = True,
        reminders: ReminderMemory | None = None,
        unit: str | None = None,
    ) -> None:
        """``desktop=False``: no notification can reach a screen (an agent outside any login
        session); only hooks run. ``unit``: the systemd unit we run in (see current_unit),
        whose sandbox hooks avoid."""
        self._runner = runner
        self._which = which
        self._platform = platform
        self._desktop = desktop
        self._reminders = reminders if reminders is not None else Reminders()
        self._unit = unit
        self._lock = threading.Lock()  # accounts refresh concurrently; the reminders are shared
        self._queue: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._closed = False
        self._told_no_notifier = False
        self._worker = threading.Thread(target=self._work, name="alerts", daemon=True)
        self._worker.start()

    def emit(
        self,
        account: str,
        event: AlertEvent,
        settings: Alerts,
        message: str,
        *,
        now: float,
        provider: str | None = None,
    ) -> None:
        """Tell the user about ``event`` if it is due; returns at once and never raises.

        ``provider`` is the provider's name for the notification's title (see Wording.name).
        """
        try:
            with self._lock:
                if self._closed or not self._reminders.should_tell(
                    account, event, settings.remind_every, now
                ):
                    return
            message = redact_text(message)
            hooks = {
                AlertEvent.REFRESHED: settings.on_refreshed,
                AlertEvent.REAUTH_REQUIRED: settings.on_reauth_required,
                AlertEvent.FAILING: settings.on_error,
            }
            if settings.desktop and event is not AlertEvent.REFRESHED:
                self._queue.put(lambda: self._notify(account, event, message, provider))
            if argv := hooks[event]:
                timeout = settings.hook_timeout
                self._queue.put(lambda: self._run_hook(account, event, argv, message, timeout))
        except Exception as exc:  # an alert must never take down a refresh
            get_logger().error("alert.failed", account=account, alert=str(event), error=str(exc))

    def close(self, timeout: float | None = None) -> bool:
        """Run the alerts already queued, then stop; return whether the worker finished."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._queue.put(None)
        self._worker.join(timeout)
        if self._worker.is_alive():
            # A hook outlived the grace period: end it rather than leave it running after us.
            kill_running_hooks()
            self._worker.join(1.0)
        return not self._worker.is_alive()

    def _work(self) -> None:
        while (job := self._queue.get()) is not None:
            try:
                job()
            except Exception as exc:  # one broken alert must not stop the ones after it
                get_logger().error("alert.failed", error=str(exc))

    def _run_hook(
        self, account: str, event: AlertEvent, argv: Sequence[str], message: str, timeout: int
    ) -> None:
        log = get_logger(account=account, alert=str(event), hook=argv[0])
        env = {
            **os.environ,
            "TVMANIAC_REFRESHD_ACCOUNT": account,
            "TVMANIAC_REFRESHD_EVENT": str(event),
            "TVMANIAC_REFRESHD_MESSAGE": message,
        }
        command, wait = list(argv), timeout
        outside = self._unit is not None and self._which("systemd-run") is not None
        if outside:
            name = hook_unit_name()
            command = outside_sandbox(argv, name=name, event=str(event), timeout=timeout)
            wait = timeout + SYSTEMD_RUN_SLACK
            log = log.bind(unit=name)
        try:
            result = self._runner(
                command,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=wait,
                env=env,
                check=False,
            )
        except subprocess.TimeoutExpired:
            log.warning("hook.timed_out", timeout=timeout)
            return
        except OSError as exc:
            self._hook_failed(log, str(exc), sandboxed=not outside)
            return
        stdout, stderr = _output(result.stdout), _output(result.stderr)
        log.debug("hook.output", status=result.returncode, stdout=stdout, stderr=stderr)
        if result.returncode != 0:
            self._hook_failed(log, stderr, sandboxed=not outside, status=result.returncode)
        else:
            log.info("hook.finished", status=0)

    def _hook_failed(
        self,
        log: FilteringBoundLogger,
        problem: str,
        *,
        sandboxed: bool,
        status: int | None = None,
    ) -> None:
        """Log a failed hook; say so when the sandbox is the likely cause (see sandbox_hint)."""
        fields: dict[str, object] = (
            {"error": problem} if status is None else {"status": status, "stderr": problem}
        )
        hint = sandbox_hint(self._unit, problem) if sandboxed and self._unit else None
        if hint:
            fields["hint"] = hint
        log.warning("hook.failed", **fields)

    def _notify(self, account: str, event: AlertEvent, message: str, provider: str | None) -> None:
        if not self._desktop:
            if not self._told_no_notifier:
                self._told_no_notifier = True
                get_logger().warning("desktop.unavailable", reason=BACKGROUND_CAVEAT)
            return
        subject = f"{provider} " if provider else ""
        if event is AlertEvent.REAUTH_REQUIRED:
            title = f"{subject}login needed ({account})"
            body = f"{message}\n{_next_step(account, 'login')}".strip()
        else:
            title = f"{subject}refresh failing ({account})"
            body = f"{message}\n{_next_step(account, 'status')}".strip()
        if self._platform.startswith("linux") and self._which("notify-send"):
            urgency = "critical" if event is AlertEvent.REAUTH_REQUIRED else "normal"
            argv = ["notify-send", f"--app-name={APP}", f"--urgency={urgency}", title, body]
        elif self._platform == "darwin" and (
            mac := macos_notification(self._which, account, title, body)
        ):
            argv = mac
            if argv[0] == "osascript" and not self._told_no_notifier:
                self._told_no_notifier = True
                get_logger().info("desktop.unreliable", reason=OSASCRIPT_CAVEAT)
        else:
            if not self._told_no_notifier:
                self._told_no_notifier = True
                get_logger().info("desktop.unavailable", platform=self._platform)
            return
        log = get_logger(account=account, alert=str(event))
        try:
            result = self._runner(
                argv,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=NOTIFY_TIMEOUT,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.warning("desktop.failed", error=str(exc))
            return
        if result.returncode != 0:
            log.warning("desktop.failed", status=result.returncode, stderr=_output(result.stderr))
