"""The everyday scenarios on every Secret Service a Linux user runs (issue 23).

Each test runs three times: on gnome-keyring, on KeePassXC 2.7.4 (its Secret Service
integration, an exposed group) and on KWallet 5.103 (kwalletd5, the wallet opened as
pam_kwallet opens it), each headless on a private bus (tests/support/secret_services.py).
The set is the focused one the issue names: login, `token`, rotation, logout with revocation,
locked then unlocked, and the daemon with short-lived tokens; the rest of the suite runs on
gnome-keyring only.
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

import pytest

from tests.integration.test_daemon import DAEMON_CONFIG, Daemon
from tests.support.harness import Harness, wait_until
from tests.support.secret_services import KeePassXCSession
from trakt_emulator import Emulator

pytestmark = pytest.mark.keyring

LIFETIME = 604800
SHORT_LIFETIME = 10  # seconds: the daemon refreshes every ~5 s
# What each Secret Service's own unlock advice names (secret_service_owner.py, unlock_advice.py:
# gnome-keyring's recipe adds --replace where systemd is not the service manager).
UNLOCK_ADVICE = {
    "gnome-keyring": "--unlock --components=secrets",
    "KeePassXC": "keepassxc --pw-stdin",
    "KWallet": "pam_kwallet",
}


def current_grant(harness: Harness) -> dict[str, object]:
    grants = harness.emulator.state()["grants"]
    return dict(grants[0])  # type: ignore[index]


def test_login_then_token(any_harness: Harness) -> None:
    """A device login stores the pair; `token` prints its access token."""
    harness = any_harness

    def approve() -> None:
        harness.emulator.approve(harness.emulator.wait_for_user_code(timeout=30))

    approver = threading.Thread(target=approve, daemon=True)
    approver.start()
    login = harness.run("login")
    approver.join(timeout=30)

    assert login.code == 0, login.err
    grant = current_grant(harness)
    stored = harness.stored()
    assert stored is not None
    assert stored["refresh_token"] == grant["refresh_token"]
    token = harness.run("token")
    assert (token.code, token.out) == (0, f"{grant['access_token']}\n"), token.err


def test_rotation_writes_in_place_and_never_loses_the_session(any_harness: Harness) -> None:
    """Each refresh rotates the pair and stores it in the existing item: on KeePassXC 2.7.4 a
    CreateItem with replace opened an access prompt for every new client, so every refresh
    timed out storing the pair it had just been given and the session was lost."""
    harness = any_harness
    harness.seed(age=0.8 * LIFETIME)

    runs = [harness.run("token"), harness.run("refresh", "--force")]
    runs.append(harness.run("refresh", "--force"))

    assert [run.code for run in runs] == [0, 0, 0], [run.err for run in runs]
    counters = harness.emulator.counters()
    assert (counters["refresh_success"], counters["invalid_grant"]) == (3, 0)
    grant = current_grant(harness)
    stored = harness.stored()
    assert stored is not None
    assert stored["refresh_token"] == grant["refresh_token"]
    assert "store_failed" not in "".join(run.err for run in runs)


def test_logout_revokes_and_deletes(any_harness: Harness) -> None:
    """Logout revokes the access token at the provider and removes the item."""
    harness = any_harness
    grant = harness.seed()

    run = harness.run("logout")

    assert run.code == 0, run.err
    assert harness.stored() is None
    revokes = harness.emulator.requests("/oauth/revoke")
    assert [revoke["body"]["token"] for revoke in revokes] == [grant["access_token"]]  # type: ignore[index]


def test_locked_then_unlocked(any_harness: Harness) -> None:
    """Locked: exit 69 with this Secret Service's own way to unlock it, no request, the item
    untouched (KWallet's empty secret once read as a corrupt item: exit 1, "log in again").
    Unlocked: `token` works again."""
    harness = any_harness
    grant = harness.seed()
    before = harness.item_text("default")
    harness.keyring.lock()

    run = harness.run("token")

    assert run.code == 69, run.err
    assert "locked" in run.err
    assert UNLOCK_ADVICE[harness.keyring.program] in run.err
    for wrong in ("logout", "not JSON", "tvmaniac-refreshd login"):
        assert wrong not in run.err
    assert harness.emulator.counters()["requests"] == 0
    harness.keyring.unlock()
    assert harness.item_text("default") == before
    again = harness.run("token")
    assert (again.code, again.out) == (0, f"{grant['access_token']}\n"), again.err


def test_config_check_and_status_name_the_secret_service(any_harness: Harness) -> None:
    """`config check` and `status` say which program answers, and its version."""
    harness = any_harness
    harness.seed()
    named = re.compile(rf"{re.escape(harness.keyring.program)} \d+(\.\d+)+ \(")

    check = harness.run("config", "check")
    status = harness.run("status")
    as_json = json.loads(harness.run("status", "--json").out)

    assert check.code == 0, check.out
    assert named.search(check.out), check.out
    assert named.search(status.out), status.out
    assert named.match(as_json["store"]["secret_service"])


def test_daemon_with_short_lived_tokens(any_harness: Harness, tmp_path: Path) -> None:
    """The daemon refreshes again and again, each new pair stored in place, none lost."""
    harness = any_harness
    harness.extra_config = DAEMON_CONFIG
    harness.write_config()
    harness.emulator.set_ttl(SHORT_LIFETIME)
    harness.seed(expires_in=SHORT_LIFETIME)
    daemon = Daemon(harness, tmp_path)
    try:
        daemon.receive_until("READY=1")
        wait_until(
            lambda: harness.emulator.counters()["refresh_success"] >= 2,
            timeout=90,
            what="2 refreshes",
        )
    finally:
        run = daemon.stop()

    assert run.code == 0, run.err
    assert harness.emulator.counters()["invalid_grant"] == 0
    assert "refresh.store_failed" not in run.err
    stored = harness.stored()
    assert stored is not None
    assert stored["refresh_token"] == current_grant(harness)["refresh_token"]


def test_keepassxc_confirmations_get_keepassxc_advice(emulator: Emulator, tmp_path: Path) -> None:
    """With KeePassXC's default confirmations, an item is locked to every new client until
    someone answers its access dialog. Headless, nobody can: `token` dismisses the dialog and
    exits 69 naming KeePassXC's confirmation, not gnome-keyring's unlock commands."""
    with KeePassXCSession(confirmations=True) as keepassxc:
        harness = Harness(emulator=emulator, keyring=keepassxc, root=tmp_path)
        harness.seed()
        run = harness.run("token")

    assert run.code == 69, run.err
    assert "confirm" in run.err
    assert "gnome-keyring" not in run.err
    assert emulator.counters()["requests"] == 0
    assert harness.leaks() == []
