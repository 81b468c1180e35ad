"""`run` as a real process: short-lived tokens from the emulator, a real keyring, a fake
systemd notify socket. The daemon is watched through what it tells systemd and the emulator."""

from __future__ import annotations

import json
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.harness import Harness, Run, wait_until

LIFETIME = 20  # seconds: the daemon refreshes every ~10 s
DAEMON_CONFIG = (
    '[daemon]\ntick = "1s"\n[retry]\ninitial = "1s"\nmaximum = "2s"\n[alerts]\ndesktop = false\n'
)


class Daemon:
    """A running `tvmaniac-refreshd run` and the notify socket it talks to."""

    def __init__(self, harness: Harness, tmp_path: Path) -> None:
        self.harness = harness
        self.socket_path = tmp_path / "notify.sock"
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind(str(self.socket_path))
        self.socket.settimeout(60)
        self.messages: list[str] = []
        self.process = harness.spawn("run", env=harness.env(NOTIFY_SOCKET=str(self.socket_path)))

    def receive_until(self, prefix: str) -> str:
        """Read notify messages until one starts with ``prefix``; return it."""
        while True:
            message = self.socket.recv(4096).decode()
            self.messages.append(message)
            if message.startswith(prefix):
                return message

    def signal(self, number: int) -> None:
        self.process.send_signal(number)

    def stop(self) -> Run:
        if self.process.poll() is None:
            self.signal(signal.SIGTERM)
        run = self.harness.finish(self.process, ("run",), timeout=30)
        self.socket.setblocking(False)
        while True:  # what the daemon said while stopping
            try:
                self.messages.append(self.socket.recv(4096).decode())
            except BlockingIOError:
                break
        self.socket.close()
        return run


@pytest.fixture
def daemon(harness: Harness, tmp_path: Path) -> Iterator[Daemon]:
    harness.extra_config = DAEMON_CONFIG
    harness.write_config()
    harness.emulator.set_ttl(LIFETIME)
    harness.seed(expires_in=LIFETIME)
    running = Daemon(harness, tmp_path)
    running.receive_until("READY=1")
    yield running
    if running.process.poll() is None:
        running.stop()


def counters(harness: Harness) -> dict[str, int]:
    return harness.emulator.counters()


class TestDaemon:
    def test_refreshes_repeatedly_and_stops_cleanly(self, daemon: Daemon) -> None:
        """Several refreshes with no error; SIGTERM gives STOPPING=1 and exit 0."""
        harness = daemon.harness
        wait_until(
            lambda: counters(harness)["refresh_success"] >= 3, timeout=90, what="3 refreshes"
        )
        run = daemon.stop()

        assert run.code == 0, run.err
        assert counters(harness)["invalid_grant"] == 0
        assert any(message.startswith("STOPPING=1") for message in daemon.messages)
        assert "<6>daemon.ready" in run.err
        assert "REFRESH" not in run.err or "refreshed" in run.err
        status = json.loads(harness.run("status", "--json").out)["accounts"][0]
        assert status["state"] == "active"

    def test_ready_carries_a_status(self, daemon: Daemon) -> None:
        """READY=1 comes with a STATUS line naming the next refresh, and no secret."""
        ready = next(message for message in daemon.messages if message.startswith("READY=1"))

        assert "STATUS=default: next refresh at " in ready

    def test_cli_refresh_meanwhile_never_double_spends(self, daemon: Daemon) -> None:
        """`refresh --force` from the CLI while the daemon runs: no invalid_grant, ever."""
        harness = daemon.harness
        for _ in range(5):
            assert harness.run("refresh", "--force").code == 0
        wait_until(lambda: counters(harness)["refresh_success"] >= 7, timeout=90, what="refreshes")

        assert counters(harness)["invalid_grant"] == 0
        assert daemon.stop().code == 0

    def test_outage_is_ridden_out(self, daemon: Daemon) -> None:
        """Three failed attempts in a row, then the daemon refreshes again by itself."""
        harness = daemon.harness
        harness.emulator.add_fault(
            {"kind": "status", "code": 503, "path": "/oauth/token", "count": 3}
        )
        wait_until(lambda: counters(harness)["refresh_success"] >= 1, timeout=90, what="recovery")
        run = daemon.stop()

        assert run.code == 0
        assert "daemon.retry_planned" in run.err
        assert counters(harness)["faults"] == 3

    def test_rejection_stops_requests_and_runs_hook(self, harness: Harness, tmp_path: Path) -> None:
        """invalid_grant: the hook runs, status says reauth_required, and nothing more is sent."""
        marker = tmp_path / "hook.out"
        harness.extra_config = DAEMON_CONFIG + (
            f'on_reauth_required = ["sh", "-c", "echo $TVMANIAC_REFRESHD_EVENT >> {marker}"]\n'
        )
        harness.write_config()
        harness.emulator.set_ttl(LIFETIME)
        harness.seed(expires_in=LIFETIME)
        harness.emulator.revoke_grant("alice")
        running = Daemon(harness, tmp_path)
        running.receive_until("READY=1")
        wait_until(marker.exists, timeout=60, what="the hook")
        requests = counters(harness)["requests"]
        state = harness.state_dir / "default.json"
        before = state.stat().st_mtime_ns
        seen = len(running.messages)
        running.signal(signal.SIGHUP)  # re-plans every account: must not send anything
        running.receive_until("READY=1")
        # The re-plan ends with its STATUS= line, sent from the pool before or after READY=1.
        if not any(message.startswith("STATUS=") for message in running.messages[seen:]):
            running.receive_until("STATUS=")
        run = running.stop()

        assert run.code == 0
        assert marker.read_text().split() == ["reauth_required"]
        assert counters(harness)["requests"] == requests
        assert counters(harness)["invalid_grant"] == 1
        assert state.stat().st_mtime_ns == before  # nothing changed, so nothing was written
        status = json.loads(harness.run("status", "--json").out)["accounts"][0]
        assert status["state"] == "reauth_required"

    def test_sighup_with_broken_config_keeps_running(self, daemon: Daemon) -> None:
        """A broken config on reload is rejected; the daemon keeps going and stops cleanly."""
        harness = daemon.harness
        harness.write_config("this is [ not toml")
        daemon.signal(signal.SIGHUP)
        daemon.receive_until("RELOADING=1")
        daemon.receive_until("READY=1")
        run = daemon.stop()

        assert run.code == 0
        assert "daemon.reload_rejected" in run.err

    def test_second_daemon_refuses(self, daemon: Daemon) -> None:
        """A second `run` for the same config exits 1 instead of racing the first."""
        second = daemon.harness.run("run", timeout=30)

        assert second.code == 1
        assert "already running" in second.err

    def test_status_shows_the_daemon(self, daemon: Daemon) -> None:
        """`status` says the daemon is running, with its pid."""
        status = json.loads(daemon.harness.run("status", "--json").out)

        assert status["daemon"] == {"running": True, "pid": daemon.process.pid}
        assert status["accounts"][0]["next_attempt_at"].endswith("Z")

    def test_login_during_run_is_picked_up(self, harness: Harness, tmp_path: Path) -> None:
        """Started logged out, the daemon notices a login made by the CLI and refreshes it."""
        harness.extra_config = DAEMON_CONFIG
        harness.write_config()
        harness.emulator.set_ttl(LIFETIME)
        running = Daemon(harness, tmp_path)
        ready = running.receive_until("READY=1")
        assert "default: not logged in" in ready
        harness.emulator.configure(auto_approve_after_polls=0)

        assert harness.run("login").code == 0
        wait_until(lambda: counters(harness)["refresh_success"] >= 1, timeout=60, what="refresh")
        assert running.stop().code == 0


def test_run_with_invalid_config_exits_78(harness: Harness) -> None:
    """The daemon refuses to start on an invalid config, with the config exit code."""
    harness.write_config("[accounts.default]\n")
    run = harness.run("run", timeout=30)

    assert run.code == 78
    assert "accounts.default.provider" in run.err
