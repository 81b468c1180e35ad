"""Alerts: when a reminder is repeated, and how hooks and desktop notifiers are run."""

from __future__ import annotations

import os
import plistlib
import select
import subprocess
import sys
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from tvmaniac_refreshd.config.settings import Alerts
from tvmaniac_refreshd.core import logs
from tvmaniac_refreshd.daemon.alerts import Alerter, AlertEvent, Reminders, script_editor_listed

DAY = 86400
T0 = 1_800_000_000.0
SECRET = "tok_9f8e7d6c5b4a39281706f5e4d3c2b1a0"
HOOK = ("/usr/local/bin/on-alert", "--flag")
ALL_HOOKS = Alerts(on_refreshed=HOOK, on_reauth_required=HOOK, on_error=HOOK)


@dataclass
class FakeRunner:
    """Records each command; answers with the next scripted outcome, else success."""

    outcomes: list[BaseException | int] = field(default_factory=list)
    calls: list[tuple[list[str], dict[str, Any]]] = field(default_factory=list)

    def __call__(self, argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
        self.calls.append((list(argv), kwargs))
        outcome = self.outcomes.pop(0) if self.outcomes else 0
        if isinstance(outcome, BaseException):
            raise outcome
        return subprocess.CompletedProcess(argv, outcome, b"out", b"err")

    @property
    def argvs(self) -> list[list[str]]:
        return [argv for argv, _ in self.calls]

    def hooks(self) -> list[dict[str, Any]]:
        return [kwargs for argv, kwargs in self.calls if argv[0] == HOOK[0]]

    def notifications(self) -> list[list[str]]:
        notifiers = ("notify-send", "osascript", "terminal-notifier")
        return [argv for argv in self.argvs if argv[0] in notifiers]


@pytest.fixture(autouse=True)
def _fresh_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Secrets registered by one test stay out of the others."""
    monkeypatch.setattr(logs, "_known", logs._Known())


@pytest.fixture
def captured() -> Iterator[list[MutableMapping[str, Any]]]:
    """The log records of the test, including those written on the worker thread."""
    with capture_logs() as records:
        yield records


def run_alerts(
    runner: Callable[..., subprocess.CompletedProcess[bytes]],
    emits: list[tuple[AlertEvent, float]],
    settings: Alerts = ALL_HOOKS,
    *,
    platform: str = "linux",
    which: Callable[[str], str | None] = lambda name: f"/usr/bin/{name}",
    message: str = "the session was revoked",
) -> None:
    """Emit each (event, time) for account ``default`` and wait for the worker to finish."""
    alerter = Alerter(runner=runner, which=which, platform=platform)
    for event, now in emits:
        alerter.emit("default", event, settings, message, now=now, provider="Trakt")
    assert alerter.close(timeout=60)


def test_reminder_is_not_repeated_within_remind_every() -> None:
    """A second reauth alert inside the window is suppressed; one after it is told."""
    reminders = Reminders()
    assert reminders.should_tell("default", AlertEvent.REAUTH_REQUIRED, DAY, T0)
    assert not reminders.should_tell("default", AlertEvent.REAUTH_REQUIRED, DAY, T0 + DAY - 1)
    assert reminders.should_tell("default", AlertEvent.REAUTH_REQUIRED, DAY, T0 + DAY)


def test_reminders_are_kept_per_account_and_event() -> None:
    """One account's or event's reminder does not silence another's."""
    reminders = Reminders()
    assert reminders.should_tell("default", AlertEvent.FAILING, DAY, T0)
    assert reminders.should_tell("work", AlertEvent.FAILING, DAY, T0)
    assert reminders.should_tell("default", AlertEvent.REAUTH_REQUIRED, DAY, T0)


def test_recovery_clears_standing_reminders() -> None:
    """After a refresh succeeds, the next failure is told at once."""
    reminders = Reminders()
    assert reminders.should_tell("default", AlertEvent.FAILING, DAY, T0)
    assert reminders.should_tell("default", AlertEvent.REFRESHED, DAY, T0 + 10)
    assert reminders.should_tell("default", AlertEvent.FAILING, DAY, T0 + 20)


def test_clock_going_backwards_does_not_silence_alerts() -> None:
    """A wall clock set back does not suppress an alert for the length of the jump."""
    reminders = Reminders()
    assert reminders.should_tell("default", AlertEvent.FAILING, DAY, T0)
    assert reminders.should_tell("default", AlertEvent.FAILING, DAY, T0 - 3600)


def test_alerter_repeats_reauth_only_after_remind_every() -> None:
    """The notification and the hook run once per window."""
    runner = FakeRunner()
    event = AlertEvent.REAUTH_REQUIRED
    run_alerts(runner, [(event, T0), (event, T0 + 60), (event, T0 + DAY)])
    assert len(runner.notifications()) == 2
    assert len(runner.hooks()) == 2


def test_refreshed_runs_hook_every_time_and_never_notifies() -> None:
    """Each refresh runs on_refreshed; none makes a desktop notification."""
    runner = FakeRunner()
    event = AlertEvent.REFRESHED
    run_alerts(runner, [(event, T0), (event, T0 + 1), (event, T0 + 2)])
    assert len(runner.hooks()) == 3
    assert runner.notifications() == []


def test_refreshed_clears_so_a_new_failure_is_told() -> None:
    """Reauth, recovery, reauth again within the window: both reauths are told."""
    runner = FakeRunner()
    reauth, refreshed = AlertEvent.REAUTH_REQUIRED, AlertEvent.REFRESHED
    run_alerts(runner, [(reauth, T0), (refreshed, T0 + 10), (reauth, T0 + 20)])
    assert len(runner.notifications()) == 2


def test_hook_gets_account_event_and_message_in_its_environment() -> None:
    """A hook runs its argv with stdin closed, the configured timeout and the three variables."""
    runner = FakeRunner()
    settings = Alerts(desktop=False, on_error=HOOK, hook_timeout=7)
    run_alerts(runner, [(AlertEvent.FAILING, T0)], settings, message="refreshes failing for 6h")
    assert runner.argvs == [list(HOOK)]
    kwargs = runner.calls[0][1]
    assert kwargs["stdin"] == subprocess.DEVNULL
    assert kwargs["timeout"] == 7
    assert kwargs["capture_output"] is True
    env = kwargs["env"]
    assert env["TVMANIAC_REFRESHD_ACCOUNT"] == "default"
    assert env["TVMANIAC_REFRESHD_EVENT"] == "error"
    assert env["TVMANIAC_REFRESHD_MESSAGE"] == "refreshes failing for 6h"
    assert env["PATH"] == os.environ["PATH"]


def test_registered_secret_in_message_reaches_hook_redacted() -> None:
    """A secret that slipped into the message is cut out before the hook sees it."""
    logs.register_secret(SECRET)
    runner = FakeRunner()
    settings = Alerts(desktop=False, on_reauth_required=HOOK)
    emits = [(AlertEvent.REAUTH_REQUIRED, T0)]
    run_alerts(runner, emits, settings, message=f"rejected {SECRET}")
    env = runner.calls[0][1]["env"]
    assert env["TVMANIAC_REFRESHD_MESSAGE"] == f"rejected {logs.REDACTED}"
    assert not any(SECRET in value for value in env.values())


def test_notify_send_on_linux() -> None:
    """Linux uses notify-send with the app name, an urgency, a title and a next step."""
    runner = FakeRunner()
    run_alerts(runner, [(AlertEvent.REAUTH_REQUIRED, T0)], Alerts())
    assert runner.argvs == [
        [
            "notify-send",
            "--app-name=tvmaniac-refreshd",
            "--urgency=critical",
            "Trakt login needed (default)",
            "the session was revoked\nRun: tvmaniac-refreshd login",
        ]
    ]


def test_failing_notification_names_the_account_and_status() -> None:
    """A failing account other than default is named in the title and in the next step."""
    runner = FakeRunner()
    alerter = Alerter(runner=runner, which=lambda name: name, platform="linux")
    alerter.emit("work", AlertEvent.FAILING, Alerts(), "failing for 6h", now=T0, provider="Trakt")
    assert alerter.close(timeout=60)
    argv = runner.argvs[0]
    assert argv[2:] == [
        "--urgency=normal",
        "Trakt refresh failing (work)",
        "failing for 6h\nRun: tvmaniac-refreshd --account work status",
    ]


def test_osascript_on_darwin_escapes_quotes_and_backslashes() -> None:
    """macOS builds an AppleScript string literal that a quote in the message cannot end."""
    runner = FakeRunner()
    emits = [(AlertEvent.REAUTH_REQUIRED, T0)]
    run_alerts(
        runner,
        emits,
        Alerts(),
        platform="darwin",
        which=lambda name: "/usr/bin/osascript" if name == "osascript" else None,
        message='say "hi" \\ bye',
    )
    assert runner.argvs == [
        [
            "osascript",
            "-e",
            'display notification "say \\"hi\\" \\\\ bye Run: tvmaniac-refreshd login" '
            'with title "Trakt login needed (default)"',
        ]
    ]


@pytest.mark.parametrize(("platform", "which"), [("linux", None), ("win32", "found")])
def test_no_notifier_logs_once_and_runs_nothing(
    platform: str, which: str | None, captured: list[MutableMapping[str, Any]]
) -> None:
    """Without a notifier for the platform nothing runs, nothing raises, and it is said once."""
    runner = FakeRunner()
    emits = [(AlertEvent.REAUTH_REQUIRED, T0), (AlertEvent.FAILING, T0)]
    run_alerts(runner, emits, Alerts(), platform=platform, which=lambda _: which)
    assert runner.calls == []
    assert [r["event"] for r in captured].count("desktop.unavailable") == 1


def test_desktop_false_makes_no_notification() -> None:
    """With desktop notifications off only the hook runs."""
    runner = FakeRunner()
    settings = Alerts(desktop=False, on_reauth_required=HOOK)
    run_alerts(runner, [(AlertEvent.REAUTH_REQUIRED, T0)], settings)
    assert runner.argvs == [list(HOOK)]


@pytest.mark.parametrize(
    ("outcome", "expected"),
    [
        (FileNotFoundError(2, "No such file or directory"), "hook.failed"),
        (subprocess.TimeoutExpired(list(HOOK), 30), "hook.timed_out"),
        (3, "hook.failed"),
    ],
)
def test_failing_hook_is_logged_and_the_next_alert_still_runs(
    outcome: BaseException | int, expected: str, captured: list[MutableMapping[str, Any]]
) -> None:
    """A hook that cannot run, times out or exits non-zero is a warning, nothing more."""
    runner = FakeRunner(outcomes=[outcome])
    settings = Alerts(desktop=False, on_refreshed=HOOK)
    run_alerts(runner, [(AlertEvent.REFRESHED, T0), (AlertEvent.REFRESHED, T0 + 1)], settings)
    assert len(runner.hooks()) == 2
    warnings = [r for r in captured if r["log_level"] == "warning"]
    assert [r["event"] for r in warnings] == [expected]
    assert warnings[0]["account"] == "default"
    assert warnings[0]["alert"] == "refreshed"


def test_runner_bug_does_not_stop_the_worker(captured: list[MutableMapping[str, Any]]) -> None:
    """An unexpected exception in one alert is logged and later alerts still run."""
    runner = FakeRunner(outcomes=[RuntimeError("boom")])
    settings = Alerts(desktop=False, on_refreshed=HOOK)
    run_alerts(runner, [(AlertEvent.REFRESHED, T0), (AlertEvent.REFRESHED, T0 + 1)], settings)
    assert len(runner.hooks()) == 2
    assert [r["event"] for r in captured if r["log_level"] == "error"] == ["alert.failed"]


def test_failing_notifier_is_logged() -> None:
    """A notifier that exits non-zero is a warning, and the hook after it still runs."""
    runner = FakeRunner(outcomes=[1])
    with capture_logs() as records:
        run_alerts(runner, [(AlertEvent.FAILING, T0)])
    assert len(runner.hooks()) == 1
    assert [r["event"] for r in records if r["log_level"] == "warning"] == ["desktop.failed"]


def test_emit_after_close_does_nothing() -> None:
    """Alerts emitted while the daemon shuts down are dropped, not raised."""
    runner = FakeRunner()
    alerter = Alerter(runner=runner, which=lambda name: name, platform="linux")
    assert alerter.close(timeout=60)
    alerter.emit("default", AlertEvent.FAILING, ALL_HOOKS, "late", now=T0)
    assert alerter.close(timeout=60)
    assert runner.calls == []


@pytest.mark.skipif(sys.platform == "win32", reason="hooks are POSIX commands")
def test_real_hook_receives_variables_and_no_secret(tmp_path: Path) -> None:
    """A real script sees the three variables, and no variable holds a registered token."""
    logs.register_secret(SECRET)
    dump = tmp_path / "env.txt"
    script = tmp_path / "hook.sh"
    script.write_text(f'#!/bin/sh\nenv > "{dump}"\n')
    script.chmod(0o700)
    settings = Alerts(desktop=False, on_reauth_required=(str(script),))
    alerter = Alerter(platform="linux")
    message = f"Trakt rejected the refresh token {SECRET}"
    alerter.emit("default", AlertEvent.REAUTH_REQUIRED, settings, message, now=T0)
    assert alerter.close(timeout=60)
    lines = dump.read_text().splitlines()
    assert "TVMANIAC_REFRESHD_ACCOUNT=default" in lines
    assert "TVMANIAC_REFRESHD_EVENT=reauth_required" in lines
    assert f"TVMANIAC_REFRESHD_MESSAGE=Trakt rejected the refresh token {logs.REDACTED}" in lines
    assert not any(SECRET in line for line in lines)


@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="needs pidfd_open to await a stranger")
def test_real_hook_that_runs_forever_is_killed_with_its_children(
    tmp_path: Path, captured: list[MutableMapping[str, Any]]
) -> None:
    """A hook past hook_timeout is killed, the sleep it started too, and a warning logged."""
    pidfile = tmp_path / "sleep.pid"
    script = tmp_path / "hang.sh"
    script.write_text(f'#!/bin/sh\nsleep 60 &\necho $! > "{pidfile}"\nwait\n')
    script.chmod(0o700)
    settings = Alerts(desktop=False, on_error=(str(script),), hook_timeout=1)
    alerter = Alerter(platform="linux")
    alerter.emit("default", AlertEvent.FAILING, settings, "failing", now=T0)
    assert alerter.close(timeout=60)
    assert [r["event"] for r in captured if r["log_level"] == "warning"] == ["hook.timed_out"]
    sleeper = int(pidfile.read_text())
    try:
        handle = os.pidfd_open(sleeper)
    except ProcessLookupError:
        return  # already gone and reaped
    try:
        # The pidfd turns readable when the process exits; the bound only guards against a hang.
        readable, _, _ = select.select([handle], [], [], 30)
        assert readable, "the hook's child is still running"
    finally:
        os.close(handle)


def test_terminal_notifier_is_preferred_on_darwin(captured: list[MutableMapping[str, Any]]) -> None:
    """terminal-notifier posts as its own app; osascript is not used when it is there (item 8)."""
    runner = FakeRunner()
    emits = [(AlertEvent.REAUTH_REQUIRED, T0)]
    run_alerts(runner, emits, Alerts(), platform="darwin")
    assert runner.argvs == [
        [
            "terminal-notifier",
            "-title",
            "Trakt login needed (default)",
            "-message",
            "the session was revoked Run: tvmaniac-refreshd login",
            "-group",
            "tvmaniac-refreshd.default",
        ]
    ]
    assert not [r for r in captured if r["event"] == "desktop.unreliable"]


def test_osascript_says_once_that_it_may_be_dropped(
    captured: list[MutableMapping[str, Any]],
) -> None:
    """osascript exits 0 even when macOS drops the banner: the log says so, once."""
    runner = FakeRunner()
    emits = [(AlertEvent.REAUTH_REQUIRED, T0), (AlertEvent.FAILING, T0)]
    only_osascript = {"osascript": "/usr/bin/osascript"}.get
    run_alerts(runner, emits, Alerts(), platform="darwin", which=only_osascript)
    assert [argv[0] for argv in runner.argvs] == ["osascript", "osascript"]
    notes = [r for r in captured if r["event"] == "desktop.unreliable"]
    assert len(notes) == 1
    assert "Script Editor" in notes[0]["reason"]
    assert "terminal-notifier" in notes[0]["reason"]


def test_script_editor_entry_in_notification_settings(tmp_path: Path) -> None:
    """Read from the ncprefs plist: absent, present, unreadable."""
    prefs = tmp_path / "Library" / "Preferences" / "com.apple.ncprefs.plist"
    assert script_editor_listed(str(tmp_path)) is None
    prefs.parent.mkdir(parents=True)
    prefs.write_bytes(plistlib.dumps({"apps": [{"bundle-id": "com.apple.Terminal", "flags": 1}]}))
    assert script_editor_listed(str(tmp_path)) is False
    prefs.write_bytes(
        plistlib.dumps(
            {"apps": [{"bundle-id": "com.apple.ScriptEditor2", "flags": 8}]},
            fmt=plistlib.FMT_BINARY,
        )
    )
    assert script_editor_listed(str(tmp_path)) is True


def test_an_agent_outside_any_session_runs_hooks_but_posts_nothing(
    captured: list[MutableMapping[str, Any]],
) -> None:
    """In the user/UID domain nothing reaches a screen: say so once, run the hooks (issue 27
    finding 7)."""
    runner = FakeRunner()
    alerter = Alerter(
        runner=runner, which=lambda name: f"/usr/bin/{name}", platform="darwin", desktop=False
    )
    for event in (AlertEvent.REAUTH_REQUIRED, AlertEvent.FAILING):
        alerter.emit("default", event, ALL_HOOKS, "revoked", now=T0, provider="Trakt")
    assert alerter.close(timeout=60)

    assert runner.notifications() == []
    assert len(runner.hooks()) == 2
    notes = [r for r in captured if r["event"] == "desktop.unavailable"]
    assert len(notes) == 1
    assert "user/UID" in notes[0]["reason"]
    assert "on_reauth_required" in notes[0]["reason"]


def test_the_script_editor_caveat_says_how_it_gets_listed() -> None:
    """Script Editor is listed in Notifications only after it notified itself once (7)."""
    from tvmaniac_refreshd.daemon.alerts import OSASCRIPT_CAVEAT  # noqa: PLC0415

    assert "inside Script Editor.app" in OSASCRIPT_CAVEAT
    assert "best effort" in OSASCRIPT_CAVEAT


def test_config_check_says_notifications_are_unavailable_in_the_user_domain() -> None:
    from tvmaniac_refreshd.cli.verbs.config_check import macos_notification_check  # noqa: PLC0415

    def which(name: str) -> str:
        return f"/opt/homebrew/bin/{name}"

    ok, detail = macos_notification_check(which, "/Users/me", "user/501")
    assert ok is None
    assert detail.startswith("unavailable")
    assert "hook" in detail
    ok, detail = macos_notification_check(which, "/Users/me", "gui/501")
    assert ok is None  # terminal-notifier: best effort, a warning
    assert "best effort" in detail
