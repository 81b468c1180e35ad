"""`status` says only what is true now, and the daemon hears of a CLI change at once.

The real command, the real gnome-keyring and the emulator; the daemon's STATUS= is read from
a notify socket as in test_daemon.py.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.integration.test_daemon import Daemon
from tests.support.harness import Harness

# A tick of an hour: whatever the daemon notices within the test, it did not notice on a tick.
SLOW_TICK = '[daemon]\ntick = "1h"\n[alerts]\ndesktop = false\n'


def test_locked_keyring_shows_what_is_known_and_still_exits_69(harness: Harness) -> None:
    """The state file, daemon and service need no keyring; the token fields are unknown."""
    harness.seed(expires_in=3600)
    assert harness.run("refresh", "--force").code == 0
    harness.keyring.lock()
    try:
        text = harness.run("status")
        data = harness.run("status", "--json")
    finally:
        harness.keyring.unlock()

    assert text.code == 69
    assert "default: unknown" in text.out
    assert "access token expires: unknown" in text.out
    assert "last attempt:         refreshed" in text.out
    assert "daemon: not running" in text.out
    assert "keyring: unavailable" in text.out
    # Issue 26 #12: the recipe once, on the keyring's line, not again in each account's advice.
    assert text.out.count("the keyring is locked") == 1
    assert data.code == 69
    status = json.loads(data.out)
    account = status["accounts"][0]
    assert (account["state"], account["expires_at"], account["last_result"]) == (
        "unknown",
        None,
        "refreshed",
    )
    assert status["keyring"]["available"] is False
    assert status["daemon"] == {"running": False, "pid": None}


def test_a_stopped_daemons_plan_is_not_shown(harness: Harness, tmp_path: Path) -> None:
    """The plan an earlier daemon left in the state file is no promise once it is gone."""
    harness.extra_config = SLOW_TICK
    harness.write_config()
    harness.seed(expires_in=3600)
    daemon = Daemon(harness, tmp_path)
    daemon.receive_until("READY=1")
    running = json.loads(harness.run("status", "--json").out)["accounts"][0]
    assert daemon.stop().code == 0
    stopped = json.loads(harness.run("status", "--json").out)["accounts"][0]
    text = harness.run("status").out

    assert running["next_attempt_at"] is not None
    assert "the daemon (pid" in running["advice"]
    assert stopped["next_attempt_at"] is None
    assert "no daemon or timer is running" in stopped["advice"]
    assert "daemon's next try" not in text


def test_cli_login_and_logout_reach_the_running_daemon_at_once(
    harness: Harness, tmp_path: Path
) -> None:
    """With an hour between ticks, only the CLI's signal can make the daemon re-plan."""
    harness.extra_config = SLOW_TICK
    harness.write_config()
    daemon = Daemon(harness, tmp_path)
    assert "default: not logged in" in daemon.receive_until("READY=1")
    harness.emulator.configure(auto_approve_after_polls=0)

    assert harness.run("login").code == 0
    daemon.receive_until("STATUS=default: next refresh at ")
    planned = json.loads(harness.run("status", "--json").out)["accounts"][0]
    assert planned["next_attempt_at"] is not None
    assert "will refresh it when due" in planned["advice"]
    assert harness.run("logout").code == 0
    daemon.receive_until("STATUS=default: not logged in")
    assert daemon.stop().code == 0
