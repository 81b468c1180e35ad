"""Issue 26: the service as a sysadmin lives with it, in a real systemd (a booted container).

Timer mode runs [alerts] as the daemon does, and hooks run outside the units' sandbox; every
oneshot result is a structured journal entry; `service status` says why a service failed or
stopped and notices an interpreter that is gone; `service uninstall` leaves nothing of ours.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.integration.test_service_systemd import USER, Machine
from tests.support.container import Container, available, poll
from tests.support.harness import CLIENT_ID, CLIENT_SECRET
from trakt_emulator import Emulator

pytestmark = pytest.mark.container

LIFETIME = 20  # seconds: a token falls due within seconds
DAEMON = "tvmaniac-refreshd.service"
ONESHOT = "tvmaniac-refreshd-refresh.service"
TIMER = "tvmaniac-refreshd-refresh.timer"
CONFIG = "/home/tok/.config/tvmaniac-refreshd/config.toml"
ALERTS_LOG = "/home/tok/alerts.log"
# Written by the reauth hook into /tmp: the machine's /tmp, not a unit's private one.
TMP_MARK = "/tmp/hook-was-here"  # noqa: S108
# A hook as a user writes one: into the home and /tmp, which the units' sandbox denies.
HOOK = 'echo "$TVMANIAC_REFRESHD_EVENT $TVMANIAC_REFRESHD_ACCOUNT" >> "$HOME/alerts.log"'
# Journal fields that differ by nature between two entries (who, when, where in the code).
VOLATILE = ("MESSAGE", "CODE_", "SYSLOG_PID", "UNIT")


def config_text(url: str) -> str:
    return (
        "[accounts.default]\n"
        f'provider = "trakt"\nclient_id = "{CLIENT_ID}"\nclient_secret = "{CLIENT_SECRET}"\n'
        f'auth_url = "{url}"\napi_url = "{url}"\n'
        "[alerts]\ndesktop = false\n"
        f'on_refreshed = ["sh", "-c", \'{HOOK}\']\n'
        f'on_reauth_required = ["sh", "-c", \'{HOOK}; echo here > {TMP_MARK}\']\n'
    )


@pytest.fixture(scope="module")
def machine() -> Iterator[Machine]:
    reason = available()
    if reason is not None:
        pytest.fail(f"cannot boot a systemd container here: {reason}")
    with (
        Emulator(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, access_ttl=LIFETIME) as emu,
        Container() as container,
    ):
        container.create_user(USER)
        container.init_keyring(USER, "sysadmin-test-password")
        container.run(
            ["sh", "-c", "mkdir -p ~/.config/tvmaniac-refreshd && umask 077 && cat > " + CONFIG],
            user=USER,
            input=config_text(emu.url),
            check=True,
        )
        emu.configure(auto_approve_after_polls=0, device_interval=1)
        container.run([container.python, "-m", "tvmaniac_refreshd", "login"], user=USER, check=True)
        yield Machine(container, emu)


def alert_lines(machine: Machine) -> list[str]:
    return machine.container.run(["cat", ALERTS_LOG], user=USER).stdout.splitlines()


def wait_until_due(machine: Machine) -> None:
    poll(
        lambda: (
            json.loads(machine.cli("status", "--json").stdout)["accounts"][0]["state"]
            in ("refresh_due", "expired")
        ),
        timeout=60,
        what="the short-lived token to fall due",
    )


def fields(entry: dict[str, object]) -> set[str]:
    """The names of an entry's own fields, without journald's (_PID, __CURSOR) or volatile ones."""
    return {key for key in entry if not key.startswith("_") and not key.startswith(VOLATILE)}


class TestTimerModeAlerts:
    def test_the_oneshot_runs_hooks_outside_the_sandbox_and_logs_every_result(
        self, machine: Machine
    ) -> None:
        """#1, #2, #5: the timer's pass runs on_refreshed and on_reauth_required (once per
        remind_every, kept in the state file), the hooks write the home and the real /tmp,
        `hook.finished` is an info entry, and each result has ACCOUNT, EVENT, REFRESH_RESULT."""
        machine.container.run(["rm", "-f", ALERTS_LOG, TMP_MARK])
        machine.cli("service", "install", "--mode", "timer")
        unit = f"_SYSTEMD_USER_UNIT={ONESHOT}"
        try:
            wait_until_due(machine)
            started = machine.container.user_systemctl(USER, "start", ONESHOT)
            assert started.returncode == 0, machine.container.journal_text(None, unit)
            assert alert_lines(machine) == ["refreshed default"]
            refreshed = machine.journal(unit, "ACCOUNT=default", "REFRESH_RESULT=refreshed")
            assert refreshed, machine.container.journal_text(None, unit)
            assert refreshed[-1]["EVENT"] == "refresh.finished"
            hooks = machine.journal(unit, "EVENT=hook.finished", "ACCOUNT=default")
            assert hooks, machine.container.journal_text(None, unit)
            assert hooks[-1]["PRIORITY"] == "6"
            assert hooks[-1]["ALERT"] == "refreshed"

            # A pass with nothing due still says so, with the same fields.
            machine.container.user_systemctl(USER, "start", ONESHOT)
            assert machine.journal(unit, "ACCOUNT=default", "REFRESH_RESULT=not_due")

            machine.emulator.revoke_grant("demo")  # auto_approve_user
            wait_until_due(machine)
            machine.container.user_systemctl(USER, "start", ONESHOT)
            assert machine.show(ONESHOT, "ExecMainStatus") == "77"
            assert alert_lines(machine) == ["refreshed default", "reauth_required default"]
            assert machine.container.run(["cat", TMP_MARK]).stdout == "here\n"
            # The next pass reminds no sooner than remind_every (a day): nothing new.
            machine.container.user_systemctl(USER, "start", ONESHOT)
            assert machine.show(ONESHOT, "ExecMainStatus") == "77", machine.container.journal_text(
                None, "-n", "60", output="short"
            )
            assert alert_lines(machine) == ["refreshed default", "reauth_required default"]
            known = machine.journal(unit, "ACCOUNT=default", "REFRESH_RESULT=reauth_required")
            assert known, machine.container.journal_text(None, unit)
        finally:
            machine.cli("service", "uninstall")
            machine.cli("login")  # the grant was revoked: a new one for the next tests

    def test_the_daemon_gives_the_same_hook_entries(self, machine: Machine) -> None:
        """Timer and daemon mode: the same hook runs for the same event, logged with the same
        fields (after the timer test above, whose entries are still in the journal)."""
        machine.container.run(["rm", "-f", ALERTS_LOG])
        machine.cli("service", "install")
        try:
            poll(
                lambda: "refreshed default" in alert_lines(machine),
                timeout=90,
                what="the daemon's on_refreshed hook",
            )
            daemon = machine.journal(f"_SYSTEMD_USER_UNIT={DAEMON}", "EVENT=hook.finished")
            timer = machine.journal(f"_SYSTEMD_USER_UNIT={ONESHOT}", "EVENT=hook.finished")
            assert daemon
            assert timer
            assert fields(daemon[-1]) == fields(timer[-1])
            refreshed = machine.journal(
                f"_SYSTEMD_USER_UNIT={DAEMON}", "REFRESH_RESULT=refreshed", "ACCOUNT=default"
            )
            oneshot = machine.journal(
                f"_SYSTEMD_USER_UNIT={ONESHOT}", "REFRESH_RESULT=refreshed", "ACCOUNT=default"
            )
            assert fields(refreshed[-1]) == fields(oneshot[-1])
        finally:
            machine.cli("service", "uninstall")


class TestServiceStatus:
    def test_a_failed_daemon_says_why_and_exits_non_zero(self, machine: Machine) -> None:
        """#7: exit status 78 is named with what to run; no stale STATUS; exit code 1."""
        machine.cli("service", "install")
        good = machine.container.run(["cat", CONFIG], user=USER, check=True).stdout
        try:
            poll(
                lambda: machine.show(DAEMON, "StatusText").startswith("default: "),
                timeout=30,
                what="a STATUS line",
            )
            machine.container.run(
                ["sh", "-c", f"echo 'broken = [' >> {CONFIG}"], user=USER, check=True
            )
            machine.container.user_systemctl(USER, "restart", DAEMON)
            poll(
                lambda: machine.show(DAEMON, "ActiveState") == "failed",
                timeout=30,
                what="the daemon to fail on its config",
            )
            shown = machine.cli("service", "status", check=False)
            assert shown.returncode == 1, shown.stdout
            assert (
                "exit status 78, invalid configuration: run `tvmaniac-refreshd config check`"
                in shown.stdout
            )
            assert "next refresh at" not in shown.stdout
            assert json.loads(machine.cli("service", "status", "--json", check=False).stdout)[
                "failed"
            ]
        finally:
            machine.container.run(
                ["sh", "-c", f"cat > {CONFIG}"], user=USER, input=good, check=True
            )
            machine.cli("service", "uninstall")

    def test_a_stopped_or_killed_daemon_shows_no_stale_status(self, machine: Machine) -> None:
        """#7: after a stop, `systemctl --user start` (not `service install`) and no old
        STATUS; after a kill -9 and its restart, "restarted 1 time"."""
        machine.cli("service", "install")
        drop_in = machine.drop_in(DAEMON, "[Service]\nRestartSec=1\n")
        try:
            machine.systemctl("daemon-reload")
            machine.systemctl("restart", DAEMON)
            poll(
                lambda: machine.show(DAEMON, "StatusText").startswith("default: "),
                timeout=30,
                what="a STATUS line",
            )
            machine.systemctl("kill", "-s", "KILL", "--kill-whom=main", DAEMON)
            poll(
                lambda: (
                    machine.show(DAEMON, "NRestarts") == "1"
                    and machine.show(DAEMON, "ActiveState") == "active"
                ),
                timeout=60,
                what="the restart after kill -9",
            )
            assert "restarted 1 time\n" in machine.cli("service", "status").stdout
            machine.systemctl("stop", DAEMON)
            stopped = machine.cli("service", "status", check=False)
            assert f"start it with: systemctl --user start {DAEMON}" in stopped.stdout
            assert "next refresh at" not in stopped.stdout
            assert "service install" not in stopped.stdout
            status = machine.cli("status").stdout
            assert f"Start it with `systemctl --user start {DAEMON}`" in status
            assert "service install" not in status
        finally:
            machine.remove_drop_in(drop_in)
            machine.cli("service", "uninstall")


class TestMovedInstallation:
    def test_a_removed_venv_stops_the_loop_and_every_verb_says_what_to_run(
        self, machine: Machine
    ) -> None:
        """#6, #9: the unit's interpreter gone (a deleted venv) is one failure, not a restart
        every 30 s; `service status`, `status` and `config check` say to reinstall, and the
        reinstall from this installation says it is updating the unit to it."""
        real = machine.container.python.rsplit("/bin/", 1)[0]
        old = "/home/tok/old-venv"
        # A second venv of the same installation, at another path (its python is a link).
        machine.container.run(
            [
                "sh",
                "-c",
                f"mkdir -p {old}/bin && cp {real}/pyvenv.cfg {old}/ && "
                f"ln -s {real}/lib {old}/lib && ln -s {machine.container.python} {old}/bin/python",
            ],
            user=USER,
            check=True,
        )
        installed = machine.container.run(
            [f"{old}/bin/python", "-m", "tvmaniac_refreshd", "service", "install"], user=USER
        )
        assert installed.returncode == 0, installed.stderr
        try:
            machine.container.run(["rm", "-rf", old], user=USER, check=True)
            machine.systemctl("restart", DAEMON)
            poll(
                lambda: machine.show(DAEMON, "ActiveState") == "failed",
                timeout=30,
                what="the daemon to fail to start",
            )
            assert machine.show(DAEMON, "ExecMainStatus") == "203"
            assert machine.show(DAEMON, "NRestarts") == "0"
            assert machine.show(DAEMON, "SubState") == "failed"  # not auto-restart

            advice = "run `tvmaniac-refreshd service install` from the current installation"
            service = machine.cli("service", "status", check=False)
            assert service.returncode == 1
            assert f"interpreter {old}/bin/python is missing" in service.stdout
            assert advice in service.stdout
            assert advice in machine.cli("status", check=False).stdout
            assert advice in machine.cli("config", "check", check=False).stdout

            again = machine.cli("service", "install")
            assert (
                f"Updating {DAEMON} to this installation ({machine.container.python}; "
                f"it ran {old}/bin/python)" in again.stdout
            )
            assert "differed from the packaged unit" not in again.stdout
            assert machine.show(DAEMON, "ActiveState") == "active"
        finally:
            machine.cli("service", "uninstall")


class TestUninstall:
    def test_a_mode_switch_and_uninstall_leave_no_failed_unit_pid_file_or_lock(
        self, machine: Machine
    ) -> None:
        """#8: a failed unit is reset on a mode switch and on uninstall (no "not-found
        failed", no degraded manager), the stopped daemon's pid file and the free locks are
        removed, and what is kept on purpose is listed."""
        good = machine.container.run(["cat", CONFIG], user=USER, check=True).stdout
        broken = ["sh", "-c", f"echo 'broken = [' >> {CONFIG}"]
        restore = ["sh", "-c", f"cat > {CONFIG}"]
        machine.cli("service", "install")
        poll(
            lambda: machine.show(DAEMON, "StatusText").startswith("default: "),
            timeout=30,
            what="a STATUS line",
        )
        machine.container.run(broken, user=USER, check=True)
        machine.container.user_systemctl(USER, "restart", DAEMON)
        poll(
            lambda: machine.show(DAEMON, "ActiveState") == "failed",
            timeout=30,
            what="the daemon to fail on its config",
        )
        machine.container.run(restore, user=USER, input=good, check=True)

        machine.cli("service", "install", "--mode", "timer")
        failed = ["list-units", "--all", "--failed", "--no-legend", "--plain", "tvmaniac*"]
        assert machine.systemctl(*failed) == ""

        machine.container.run(broken, user=USER, check=True)
        machine.container.user_systemctl(USER, "start", ONESHOT)
        machine.container.run(restore, user=USER, input=good, check=True)
        assert machine.show(ONESHOT, "ActiveState") == "failed"
        drop_in = machine.drop_in(ONESHOT, "[Service]\nEnvironment=KEEP=me\n")
        machine.cli("refresh", "--force")  # an account lock in the state directory's locks/

        removed = machine.cli("service", "uninstall").stdout

        assert machine.systemctl(*failed) == ""
        assert machine.systemctl("is-system-running") != "degraded"
        leftovers = machine.container.run(
            [
                "sh",
                "-c",
                "ls -d ~/.local/state/tvmaniac-refreshd/daemon-*.pid "
                "~/.local/state/tvmaniac-refreshd/locks 2>/dev/null; true",
            ],
            user=USER,
        ).stdout
        assert leftovers == ""
        assert "Kept on purpose: the config" in removed
        assert "logout" in removed
        assert f"Kept your drop-ins in /home/tok/.config/systemd/user/{ONESHOT}.d" in removed
        machine.remove_drop_in(drop_in)


class TestUnitWords:
    def test_units_point_to_the_man_page_and_say_no_trakt(self, machine: Machine) -> None:
        """#10, #13: Documentation= is the man page, not a path into site-packages; the
        descriptions fit any OAuth2 account; timer mode names the unit its drop-ins go to."""
        installed = machine.cli("service", "install", "--mode", "timer").stdout
        try:
            for unit in (ONESHOT, TIMER):
                assert machine.show(unit, "Documentation").strip('"') == "man:tvmaniac-refreshd(1)"
                assert "Trakt" not in machine.show(unit, "Description")
            assert f"systemctl --user edit {ONESHOT}" in installed
        finally:
            machine.cli("service", "uninstall")
        machine.cli("service", "install")
        try:
            assert machine.show(DAEMON, "Documentation").strip('"') == "man:tvmaniac-refreshd(1)"
            assert "Trakt" not in machine.show(DAEMON, "Description")
        finally:
            machine.cli("service", "uninstall")
