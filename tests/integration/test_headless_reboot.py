"""A headless machine rebooted with nobody logged in, in a real systemd container.

Two lingering users, each with the daemon service installed after a device login:
- ``srv`` keeps its tokens in the file store and has no keyring at all: after the reboot its
  service starts and refreshes the due token by itself;
- ``tok`` keeps them in gnome-keyring: after the reboot the login collection is locked, the
  daemon is degraded and says how to unlock it from a shell; the README's headless recipe then
  unlocks it, and the daemon recovers by itself.

Each user talks to its own Trakt emulator in the test process (the container shares loopback).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.support.container import Container, available, poll
from tests.support.harness import CLIENT_ID, CLIENT_SECRET
from trakt_emulator import Emulator

pytestmark = pytest.mark.container

LIFETIME = 20  # seconds: the daemon refreshes every ~10 s
PASSWORD = "headless-login-password"
UNIT = "tvmaniac-refreshd.service"
# The README's recipe, as a user types it in a bash over ssh (the password comes on stdin here).
UNLOCK_RECIPE = (
    "systemctl --user stop gnome-keyring-daemon.socket gnome-keyring-daemon.service; "
    'read -rs PW; printf %s "$PW" | gnome-keyring-daemon --unlock --components=secrets; '
    "unset PW"
)


@dataclass
class User:
    name: str
    emulator: Emulator
    container: Container

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.container.run(
            [self.container.python, "-m", "tvmaniac_refreshd", *args], user=self.name
        )

    def status_text(self) -> str:
        return self.container.user_systemctl(self.name, "show", "-P", "StatusText", UNIT).stdout

    def journal(self, *match: str) -> list[dict[str, object]]:
        """This boot's entries of the user's daemon."""
        return self.container.journal(
            self.name, "-b", "SYSLOG_IDENTIFIER=tvmaniac-refreshd", *match
        )

    def refreshed(self) -> list[dict[str, object]]:
        return self.journal(f"_SYSTEMD_USER_UNIT={UNIT}", "REFRESH_RESULT=refreshed")

    def set_up(self, backend: str) -> None:
        emu = self.emulator.url
        config = (
            "[accounts.default]\n"
            f'provider = "trakt"\nclient_id = "{CLIENT_ID}"\nclient_secret = "{CLIENT_SECRET}"\n'
            f'auth_url = "{emu}"\napi_url = "{emu}"\n'
            f'[store]\nbackend = "{backend}"\ntimeout = "3s"\n'
            '[retry]\ninitial = "2s"\nmaximum = "4s"\n'
            "[alerts]\ndesktop = false\n"
        )
        self.container.run(
            [
                "sh",
                "-c",
                "mkdir -p ~/.config/tvmaniac-refreshd && umask 077 && "
                "cat > ~/.config/tvmaniac-refreshd/config.toml",
            ],
            user=self.name,
            input=config,
            check=True,
        )
        self.emulator.configure(auto_approve_after_polls=0, device_interval=1)
        login = self.cli("login")
        assert login.returncode == 0, login.stderr
        install = self.cli("service", "install")
        assert install.returncode == 0, install.stderr
        poll(self.refreshed, timeout=90, what=f"a refresh by {self.name}'s service")


@dataclass
class Machine:
    container: Container
    srv: User  # file store, no keyring
    tok: User  # gnome-keyring


@pytest.fixture(scope="module")
def rebooted() -> Iterator[Machine]:
    """Both users logged in with a running service; then the machine rebooted."""
    reason = available()
    if reason is not None:
        pytest.fail(f"cannot boot a systemd container here: {reason}")
    with (
        Emulator(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, access_ttl=LIFETIME) as emu1,
        Emulator(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, access_ttl=LIFETIME) as emu2,
        Container() as container,
    ):
        container.create_user("srv")
        container.create_user("tok")
        container.init_keyring("tok", PASSWORD)
        machine = Machine(container, User("srv", emu1, container), User("tok", emu2, container))
        machine.srv.set_up("file")
        machine.tok.set_up("keyring")

        container.reboot()
        for user in ("srv", "tok"):
            container.wait_for_user_manager(user)
        yield machine


def test_nobody_is_logged_in_after_the_reboot(rebooted: Machine) -> None:
    sessions = rebooted.container.run(["loginctl", "list-sessions", "--no-legend"])
    assert sessions.stdout.strip() == ""


def test_the_file_store_service_refreshes_by_itself_after_a_reboot(rebooted: Machine) -> None:
    srv = rebooted.srv
    entries = poll(srv.refreshed, timeout=90, what="a refresh after the reboot")

    assert entries[0]["ACCOUNT"] == "default"
    assert srv.container.user_systemctl("srv", "is-active", UNIT).stdout.strip() == "active"
    report = json.loads(srv.cli("status", "--json").stdout)
    assert report["store"]["backend"] == "file"
    assert report["accounts"][0]["state"] in ("active", "refresh_due")
    assert srv.emulator.counters()["invalid_grant"] == 0
    # What a user sees with `journalctl --user`, run as that user.
    shown = srv.container.run(
        ["journalctl", "--user", "-b", "-u", UNIT, "--no-pager", "-o", "cat"], user="srv"
    ).stdout
    assert "refreshed" in shown
    # The file store never needed a keyring: none ever ran for this user.
    assert srv.container.run(["pgrep", "-u", "srv", "gnome-keyring"]).returncode == 1


def test_the_keyring_is_locked_after_a_reboot_until_the_headless_recipe(
    rebooted: Machine,
) -> None:
    """Today's behaviour with the Secret Service, then the recipe that works without a desktop."""
    tok = rebooted.tok
    # Locked and degraded: the service runs, retries, and says how to unlock from a shell.
    locked = poll(
        lambda: [
            e for e in tok.journal("EVENT=daemon.retry_planned") if "locked" in str(e.get("ERROR"))
        ],
        timeout=90,
        what="the daemon finding the keyring locked",
    )
    assert "gnome-keyring-daemon --unlock --components=secrets" in str(locked[0]["ERROR"])
    assert "keyring" in poll(tok.status_text, timeout=30, what="a STATUS line")
    assert tok.container.user_systemctl("tok", "is-active", UNIT).stdout.strip() == "active"
    assert tok.refreshed() == []
    status = tok.cli("status")
    assert status.returncode == 69
    assert "gnome-keyring-daemon --unlock" in status.stdout + status.stderr

    # The recipe, as the user would run it after `ssh tok@machine`.
    unlock = tok.container.run(["bash", "-c", UNLOCK_RECIPE], user="tok", input=PASSWORD + "\n")
    assert unlock.returncode == 0, unlock.stderr

    # The daemon notices at its next retry, without a restart, and refreshes the due token.
    poll(tok.refreshed, timeout=60, what="a refresh once the keyring is unlocked")
    assert tok.journal("EVENT=daemon.recovered") != []
    assert tok.container.user_systemctl("tok", "show", "-P", "NRestarts", UNIT).stdout == "0\n"
    assert tok.cli("status").returncode == 0
