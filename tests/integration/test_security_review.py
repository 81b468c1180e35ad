"""Issue 13's security review against the real command, the emulator and the real keyring.

Each test reproduces one attack the review ran; the unit-level ones are in
tests/unit/test_security_review.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from pathlib import Path

import pytest

from tests.support.harness import CLIENT_ID, CLIENT_SECRET, Harness, wait_until
from tests.support.keyring_session import applied
from trakt_emulator import Emulator
from tvmaniac_refreshd.config.settings import StoreSettings
from tvmaniac_refreshd.core.errors import StoreUnavailable
from tvmaniac_refreshd.storage.keyring_store import KeyringStore, default_backend

DUE_AGE = 0.9 * 604800  # a week-long token with most of its life behind it: due, still valid


def state_file(harness: Harness) -> Path:
    return harness.state_dir / "default.json"


class TestLogoutToAnotherServer:
    """Finding 1: `logout` sent the stored token and the client secret wherever auth_url now
    pointed, said "Logged out", and the real grant stayed alive."""

    def test_nothing_is_sent_and_nothing_deleted(self, harness: Harness) -> None:
        grant = harness.seed()
        with Emulator(client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as elsewhere:
            harness.write_config(
                harness.config_path.read_text().replace(harness.emulator.url, elsewhere.url)
            )
            run = harness.run("logout")

            assert run.code == 1  # not a usage error (issue 25, item 2)
            assert "nothing was sent" in run.err
            assert "logout --local" in run.err
            assert elsewhere.requests() == []
        assert harness.emulator.requests("/oauth/revoke") == []
        stored = harness.stored()
        assert stored is not None
        assert stored["refresh_token"] == grant["refresh_token"]

    def test_local_deletes_without_sending(self, harness: Harness) -> None:
        harness.seed()
        with Emulator(client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as elsewhere:
            harness.write_config(
                harness.config_path.read_text().replace(harness.emulator.url, elsewhere.url)
            )
            run = harness.run("logout", "--local")

            assert run.code == 0, run.err
            assert "without revoking" in run.err
            assert elsewhere.requests() == []
        assert harness.stored() is None
        assert harness.emulator.requests("/oauth/revoke") == []


def test_a_full_disk_does_not_hide_a_valid_token(harness: Harness) -> None:
    """Finding 4: with the state unwritable, `token` said "internal error" and printed nothing."""
    grant = harness.seed(age=DUE_AGE)
    no_writes = ["sh", "-c", 'ulimit -f 0 && exec "$@"', "sh"]
    run = harness.run("token", prefix=no_writes)

    assert run.code == 0, run.err
    assert run.out == f"{grant['access_token']}\n"
    assert "internal error" not in run.err
    assert f"cannot write the state directory {harness.state_dir}" in run.err
    # Nothing was spent: the state could not record the in-flight refresh, so none was sent.
    assert harness.emulator.counters().get("refresh_success", 0) == 0


class TestServerText:
    """Finding 5: a 400's ``error`` went to stderr with its escape sequences, and the tokens and
    client secret the server echoed were stored in `last_error` and shown by `status --json`."""

    @pytest.mark.parametrize("echoed", ["refresh_token", "client_secret"])
    def test_echoed_secrets_are_redacted_before_storing(
        self, harness: Harness, echoed: str
    ) -> None:
        grant = harness.seed()
        secret = str(grant["refresh_token"]) if echoed == "refresh_token" else CLIENT_SECRET
        assert len(secret) <= 64  # else it is no RFC 6749 error code and never repeated
        harness.emulator.add_fault(
            {
                "kind": "body",
                "code": 400,
                "content_type": "application/json",
                "body": json.dumps({"error": secret}),
                "path": "/oauth/token",
            }
        )
        run = harness.run("refresh", "--force")

        assert run.code == 1
        stored = state_file(harness).read_text()
        assert secret not in stored
        assert "[redacted]" in json.loads(stored)["last_error"]
        status = harness.run("status", "--json")
        assert "[redacted]" in status.out
        # harness.leaks() checks every command's output for the token and the secret.

    def test_escape_sequences_never_reach_the_terminal(self, harness: Harness) -> None:
        harness.seed()
        harness.emulator.add_fault(
            {
                "kind": "body",
                "code": 400,
                "content_type": "application/json",
                "body": json.dumps({"error": "x\u001b[2K\r\u001b[32mall good: refreshed\u001b[0m"}),
                "path": "/oauth/token",
            }
        )
        run = harness.run("refresh", "--force")

        assert run.code == 1
        assert "\x1b" not in run.err
        assert "\r" not in run.err
        assert "\x1b" not in state_file(harness).read_text()


def test_a_hung_secret_service_leaks_no_thread_or_descriptor(harness: Harness) -> None:
    """Finding 3: with gnome-keyring stopped, every bounded call left a thread and two fds."""
    harness.seed()
    service = harness.keyring.pids[-1]  # gnome-keyring-daemon (the bus is first)
    store = KeyringStore(
        StoreSettings(timeout=0.5), lambda: default_backend(os.environ, timeout=0.5)
    )

    def workers() -> int:
        return sum(thread.name.startswith("keyring:") for thread in threading.enumerate())

    with applied(harness.keyring.env):
        assert store.load("default") is not None
        descriptors = len(os.listdir("/proc/self/fd"))
        os.kill(service, signal.SIGSTOP)
        try:
            for _ in range(12):
                with pytest.raises(StoreUnavailable):
                    store.load("default")
            assert workers() <= 1
            assert len(os.listdir("/proc/self/fd")) <= descriptors + 2
            # The deadline travels with the D-Bus calls: the stuck worker ends by itself.
            wait_until(lambda: workers() == 0, timeout=20, what="the stuck worker to end")
            assert len(os.listdir("/proc/self/fd")) <= descriptors
        finally:
            os.kill(service, signal.SIGCONT)
        assert store.load("default") is not None


def test_the_session_bus_never_carries_a_secret_in_clear(harness: Harness) -> None:
    """Finding 10: over the `plain` session a same-user dbus-monitor saw every item whole."""
    harness.seed()
    log = harness.root / "monitor.log"
    with log.open("w") as sink:
        monitor = subprocess.Popen(
            ["dbus-monitor", "--session"],
            env=harness.keyring.env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(lambda: "NameLost" in log.read_text(), what="dbus-monitor to attach")
        assert harness.run("refresh", "--force").code == 0  # a read and a write
        assert harness.run("status").code == 0
        wait_until(lambda: "GetSecret" in log.read_text(), what="the reads to be seen")
    finally:
        monitor.terminate()
        monitor.wait(timeout=30)
    seen = log.read_text()
    for secret in harness.secrets():
        assert secret not in seen
        assert " ".join(f"{byte:02x}" for byte in secret.encode()[:16]) not in seen
    # The write was on the bus too: in place, since the item exists (issue 23).
    assert "SetSecret" in seen
