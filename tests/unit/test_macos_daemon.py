"""Under launchd: a bad config waits instead of restarting in a loop (item 5); the agent's log
files stay small (item 9)."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import fake_launchctl
from tvmaniac_refreshd.core.errors import ConfigError
from tvmaniac_refreshd.core.launchd_log import SUPERVISOR_VARIABLE, trim_launchd_logs, trim_log
from tvmaniac_refreshd.daemon.runner import config_watch, wait_for_valid_config
from tvmaniac_refreshd.service.launchd import LABELS, render

VALID = '[accounts.default]\nprovider = "trakt"\nclient_id = "abc"\n'
INVALID = '[accounts.default]\nprovider = "trakt"\nclient_id = 5\nbogus = 1\n'


class TestWaitForValidConfig:
    def test_waits_until_the_config_loads(self) -> None:
        attempts: list[int] = []
        waits: list[int] = []

        def load() -> object:
            attempts.append(1)
            if len(attempts) < 3:
                raise ConfigError("config.toml", ["client_id: expected a string"])
            return object()

        def wait() -> int:
            waits.append(1)
            return signal.SIGHUP

        assert wait_for_valid_config(load, wait) is True
        assert (len(attempts), len(waits)) == (3, 2)

    def test_a_stop_signal_ends_the_wait(self) -> None:
        def load() -> object:
            raise ConfigError("config.toml", ["bad"])

        assert wait_for_valid_config(load, lambda: signal.SIGTERM) is False


@pytest.fixture
def restore_signal_mask() -> Iterator[None]:
    before = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    yield
    signal.pthread_sigmask(signal.SIG_SETMASK, before)


@pytest.mark.usefixtures("restore_signal_mask")
def test_config_watch_wakes_on_a_change() -> None:
    """The watcher turns a changed file identity into SIGHUP for the waiting main thread."""
    identities = iter(["first", "first", "second"])
    # If the watcher never signals, this ends the wait (as a failure) instead of hanging.
    safety = threading.Timer(
        20, signal.pthread_kill, (threading.main_thread().ident, signal.SIGINT)
    )
    with config_watch(lambda: next(identities, "second"), poll=0.001) as wait:
        safety.start()
        try:
            received = wait()
        finally:
            safety.cancel()
    assert received == signal.SIGHUP


def _lines(stream: object) -> tuple[queue.Queue[str], threading.Thread]:
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:  # type: ignore[attr-defined]
            lines.put(line)
        lines.put("")  # the end of the stream: the process exited

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    return lines, thread


def _wait_for(lines: queue.Queue[str], text: str) -> str:
    seen: list[str] = []
    while True:
        try:
            line = lines.get(timeout=120)  # bounded and generous: shared, loaded machines
        except queue.Empty:
            pytest.fail(f"never saw {text!r}; saw {seen}")
        if not line:
            pytest.fail(f"the stream ended before {text!r}; saw {seen}")
        seen.append(line)
        if text in line:
            return line


def _wait_for_any(lines: queue.Queue[str], *texts: str) -> str:
    """Return the first line with one of ``texts``, or "" if the stream ends first."""
    seen: list[str] = []
    while True:
        try:
            line = lines.get(timeout=120)  # bounded
        except queue.Empty:
            pytest.fail(f"never saw any of {texts}; saw {seen}")
        if not line or any(text in line for text in texts):
            return line
        seen.append(line)


def _daemon(config: Path, tmp_path: Path, *, launchd: bool) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "HOME": str(tmp_path),
        "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
    }
    env.pop(SUPERVISOR_VARIABLE, None)
    env.pop("DBUS_SESSION_BUS_ADDRESS", None)
    if launchd:
        env[SUPERVISOR_VARIABLE] = "launchd"
    return subprocess.Popen(
        [sys.executable, "-m", "tvmaniac_refreshd", "--config", str(config), "run"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_agent_waits_for_a_daemon_already_running(tmp_path: Path) -> None:
    """A `run` left open in Terminal holds the lock when launchd starts the agent. An exit 1
    would be restarted every ThrottleInterval, forever (KeepAlive={SuccessfulExit=false}, the
    fake launchd does as the real one); the agent waits instead, takes over when the other
    stops, and a bootout (SIGTERM) leaves it down (issue 27 finding 4)."""
    config = tmp_path / "config.toml"
    config.write_text(VALID)
    state = fake_launchctl.new_state()
    target = f"gui/{os.getuid()}/{LABELS['daemon']}"
    plist = tmp_path / "agent.plist"
    argv = [sys.executable, "-m", "tvmaniac_refreshd", "--config", str(config)]
    plist.write_bytes(render("daemon", argv, tmp_path / "logs"))
    fake_launchctl.bootstrap(state, target.rsplit("/", 1)[0], str(plist))
    job = state["domains"][target.rsplit("/", 1)[0]]["loaded"][LABELS["daemon"]]

    terminal = _daemon(config, tmp_path, launchd=False)
    terminal_lines, terminal_pump = _lines(terminal.stderr)
    agent = None
    try:
        _wait_for(terminal_lines, "daemon.ready")
        agent = _daemon(config, tmp_path, launchd=True)  # what launchd's RunAtLoad starts
        lines, pump = _lines(agent.stderr)
        said = _wait_for_any(lines, "daemon.waiting_for_other_instance", "daemon.ready")
        if not said:  # it exited: tell the fake launchd, which applies KeepAlive
            fake_launchctl.exited(state, target, agent.wait(timeout=120))
        assert (job["runs"], job["state"]) == (1, "running"), "launchd would restart it forever"
        assert "waiting_for_other_instance" in said
        assert str(terminal.pid) in said

        terminal.send_signal(signal.SIGTERM)
        assert terminal.wait(timeout=120) == 0
        _wait_for(lines, "daemon.ready")  # the watcher sees the lock free (within 5 s)

        agent.send_signal(signal.SIGTERM)
        fake_launchctl.exited(state, target, agent.wait(timeout=120))
        assert (job["runs"], job["state"]) == (1, "not running")
    finally:
        for process in (terminal, agent):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
        terminal_pump.join(10)
        assert terminal.stderr is not None
        terminal.stderr.close()
        if agent is not None:
            pump.join(10)
            assert agent.stderr is not None
            agent.stderr.close()


def test_daemon_under_launchd_waits_on_a_bad_config_and_recovers(tmp_path: Path) -> None:
    """The real `run`: exit 78 would be restarted every 30 s forever; instead it stays up,
    says what is wrong, starts once the file is fixed, and exits 0 on SIGTERM."""
    config = tmp_path / "config.toml"
    config.write_text(INVALID)
    env = {
        **os.environ,
        "HOME": str(tmp_path),
        SUPERVISOR_VARIABLE: "launchd",
        "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
    }
    env.pop("DBUS_SESSION_BUS_ADDRESS", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "tvmaniac_refreshd", "--config", str(config), "run"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    lines, pump = _lines(process.stderr)
    try:
        line = _wait_for(lines, "config_invalid")
        assert "client_id" in line
        assert process.poll() is None  # still up: no exit for launchd to restart

        config.write_text(VALID)
        process.send_signal(signal.SIGHUP)  # the watcher would too, within 5 s
        _wait_for(lines, "daemon.ready")

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=120) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        pump.join(10)
        assert process.stderr is not None
        process.stderr.close()


def test_without_launchd_a_bad_config_still_exits_78(tmp_path: Path) -> None:
    """systemd's RestartPreventExitStatus=78 relies on the exit code: unchanged there."""
    config = tmp_path / "config.toml"
    config.write_text(INVALID)
    env = {k: v for k, v in os.environ.items() if k != SUPERVISOR_VARIABLE}
    result = subprocess.run(
        [sys.executable, "-m", "tvmaniac_refreshd", "--config", str(config), "run"],
        capture_output=True,
        env={**env, "HOME": str(tmp_path)},
        check=False,
        timeout=60,
    )
    assert result.returncode == 78


class TestTrimLog:
    def test_a_big_log_starts_over_and_keeps_one_generation(self, tmp_path: Path) -> None:
        path = tmp_path / "stderr.log"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, b"x" * 200)
            assert trim_log(fd, path, limit=100) is True
            os.write(fd, b"after\n")
        finally:
            os.close(fd)
        assert path.read_bytes() == b"after\n"
        assert (tmp_path / "stderr.log.1").read_bytes() == b"x" * 200

    def test_small_logs_and_other_files_are_left_alone(self, tmp_path: Path) -> None:
        path = tmp_path / "stderr.log"
        other = tmp_path / "mine.log"
        fd = os.open(other, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        path.write_bytes(b"y" * 200)
        try:
            os.write(fd, b"z" * 200)
            assert trim_log(fd, path, limit=100) is False  # fd writes elsewhere
            assert trim_log(fd, other, limit=1000) is False  # small enough
        finally:
            os.close(fd)
        read, write = os.pipe()
        try:
            assert trim_log(write, path, limit=0) is False  # not a regular file
        finally:
            os.close(read)
            os.close(write)
        assert path.read_bytes() == b"y" * 200

    def test_only_under_launchd(self, tmp_path: Path) -> None:
        trim_launchd_logs({"HOME": str(tmp_path)})  # not supervised: nothing, even no directory
        assert not (tmp_path / "Library").exists()


def test_other_signals_keep_waiting() -> None:
    """The CLI's "accounts changed" signal (SIGUSR1) does not end the wait; SIGTERM does."""
    signals = iter([signal.SIGUSR1, signal.SIGUSR1, signal.SIGTERM])

    def load() -> object:
        raise ConfigError("config.toml", ["bad"])

    assert wait_for_valid_config(load, lambda: next(signals)) is False
    assert next(signals, None) is None
