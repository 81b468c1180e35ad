"""Cron beside the daemon (issue 22): in a real systemd, the installed daemon and a cron-like
caller of the same account (``env -i HOME=… PATH=…``: no XDG_RUNTIME_DIR, no bus address) share
one lock and one state, so each refresh token is spent once.

Before, the unit took its lock in ``$XDG_RUNTIME_DIR`` (systemd sets it) and cron in the state
directory: two locks, and a refresh token spent twice while the provider was slow to answer.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.support.container import Container, available, poll
from tests.support.harness import CLIENT_ID, CLIENT_SECRET
from trakt_emulator import Emulator

pytestmark = pytest.mark.container

USER = "crontok"
LIFETIME = 20  # seconds: the installed daemon refreshes every ~10 s
DELAY = 3  # seconds the provider takes to answer a refresh
REFRESHES = 4  # the daemon's and cron's together, each a chance for two to overlap
WINDOW = 180  # seconds: a bound only


@pytest.fixture(scope="module")
def machine() -> Iterator[tuple[Container, Emulator]]:
    reason = available()
    if reason is not None:
        pytest.fail(f"cannot boot a systemd container here: {reason}")
    with (
        Emulator(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, access_ttl=LIFETIME) as emu,
        Container() as container,
    ):
        container.create_user(USER)
        container.init_keyring(USER, "cron-test-password")
        config = (
            "[accounts.default]\n"
            f'provider = "trakt"\nclient_id = "{CLIENT_ID}"\nclient_secret = "{CLIENT_SECRET}"\n'
            f'auth_url = "{emu.url}"\napi_url = "{emu.url}"\n'
            '[http]\nread_timeout = "30s"\n'
            "[alerts]\ndesktop = false\n"
        )
        container.run(
            [
                "sh",
                "-c",
                "mkdir -p ~/.config/tvmaniac-refreshd && umask 077 && "
                "cat > ~/.config/tvmaniac-refreshd/config.toml",
            ],
            user=USER,
            input=config,
            check=True,
        )
        emu.configure(auto_approve_after_polls=0, device_interval=1)
        container.run([container.python, "-m", "tvmaniac_refreshd", "login"], user=USER, check=True)
        yield container, emu


def spent_tokens(emu: Emulator) -> list[str]:
    """The refresh tokens the emulator received, in order."""
    bodies = [request["body"] for request in emu.requests("/oauth/token")]
    return [
        str(body.get("refresh_token"))
        for body in bodies
        if isinstance(body, dict) and body.get("grant_type") == "refresh_token"
    ]


def cron(container: Container, *args: str, bus: bool) -> subprocess.CompletedProcess[str]:
    """Run the command as cron does: the user's uid, HOME and PATH, and nothing else; with
    ``bus``, the bus address a crontab may export too (still no XDG_RUNTIME_DIR)."""
    home = f"/home/{USER}"
    argv = ["runuser", "-u", USER, "--", "env", "-i", f"HOME={home}", "PATH=/usr/bin:/bin"]
    if bus:
        argv.append(f"DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/{container.uid(USER)}/bus")
    return container.run([*argv, container.python, "-m", "tvmaniac_refreshd", *args], timeout=120)


@pytest.mark.parametrize("bus", [False, True], ids=["bare", "bus-exported"])
def test_cron_and_the_daemon_spend_each_refresh_token_once(
    machine: tuple[Container, Emulator], bus: bool
) -> None:
    container, emu = machine
    container.run(
        [container.python, "-m", "tvmaniac_refreshd", "service", "install"], user=USER, check=True
    )
    poll(
        lambda: (
            container.user_systemctl(
                USER, "show", "-P", "ActiveState", "tvmaniac-refreshd.service"
            ).stdout.strip()
            == "active"
        ),
        timeout=60,
        what="the daemon",
    )
    emu.clear_faults()
    emu.add_fault({"kind": "delay", "seconds": DELAY, "path": "/oauth/token"})
    before = len(spent_tokens(emu))
    runs: list[subprocess.CompletedProcess[str]] = []
    deadline = time.monotonic() + WINDOW
    # Cron calls back to back (each a real process: no sleep) until several refreshes happened.
    while len(spent_tokens(emu)) - before < REFRESHES and time.monotonic() < deadline:
        runs.append(cron(container, "refresh", bus=bus))

    assert [(run.returncode, run.stderr) for run in runs if run.returncode != 0] == []
    spent = spent_tokens(emu)
    assert len(spent) - before >= REFRESHES, "the daemon and cron made too few refreshes"
    assert len(spent) == len(set(spent)), "a refresh token was spent twice"
    assert emu.counters().get("invalid_grant", 0) == 0
    # Both took part: cron refreshed at least once, or waited for the daemon's refresh.
    said = " ".join(run.stdout for run in runs)
    assert "refreshed" in said
