"""The per-config instance lock, and the CLI telling the daemon that holds it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tvmaniac_refreshd.daemon import instance
from tvmaniac_refreshd.storage.layout import Layout


@pytest.fixture
def blocked() -> Iterator[None]:
    """CHANGED blocked in this thread, as the daemon blocks it, so it waits to be taken.

    A handler is installed too: the signal is sent to the process, and another thread of the
    test run (one an earlier test left running) that does not block it would otherwise take
    its default action, which ends the whole run.
    """
    previous = signal.signal(instance.CHANGED, lambda signum, frame: None)
    signal.pthread_sigmask(signal.SIG_BLOCK, {instance.CHANGED})
    try:
        yield
    finally:
        while signal.sigtimedwait({instance.CHANGED}, 0) is not None:
            pass
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {instance.CHANGED})
        signal.signal(instance.CHANGED, previous)


# A daemon stand-in: holds the instance lock, says so, and reports the first CHANGED it gets.
HOLDER = """
import signal, sys
from pathlib import Path
from tvmaniac_refreshd.daemon import instance
signal.pthread_sigmask(signal.SIG_BLOCK, {instance.CHANGED})
with instance.hold(Path(sys.argv[1])) as held:
    print("held" if held else "busy", flush=True)
    taken = signal.sigtimedwait({instance.CHANGED}, 60)
    print("told" if taken else "untold", flush=True)
"""


@contextlib.contextmanager
def holder(path: Path) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == "held\n"
        yield process
    finally:
        process.kill()
        process.communicate()


def test_tell_signals_the_holder_of_the_lock(tmp_path: Path, blocked: None) -> None:
    """The holder's PID comes from the kernel (the record lock), not from the file's text."""
    path = Layout(str(tmp_path)).daemon_pid(str(tmp_path / "config.toml"))
    with holder(path) as process:
        path.write_text("1\n")  # whatever the file says, the lock's holder is told
        assert instance.running_pid(path) == process.pid
        assert instance.tell(path) == process.pid
        assert process.stdout is not None
        assert process.stdout.readline() == "told\n"
    assert signal.sigtimedwait({instance.CHANGED}, 0) is None


def test_a_second_daemon_is_refused_and_the_pid_cleared_on_exit(tmp_path: Path) -> None:
    path = Layout(str(tmp_path)).daemon_pid(str(tmp_path / "config.toml"))
    with holder(path) as process:
        assert path.read_text() == f"{process.pid}\n"
        with instance.hold(path) as held:
            assert not held
        assert instance.running_pid(path) == process.pid  # our open and close left it held
        process.send_signal(instance.CHANGED)
        process.wait(timeout=30)
    assert path.read_text() == ""
    assert instance.running_pid(path) is None


def test_a_stale_pid_under_a_foreign_flock_is_never_signalled(
    tmp_path: Path, blocked: None
) -> None:
    """A process holding the file's flock (a new daemon that has not written its PID yet, or
    one in another PID namespace) left the PID of an unrelated process in the file: that
    process, here this test, is not signalled."""
    path = Layout(str(tmp_path)).daemon_pid(str(tmp_path / "config.toml"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{os.getpid()}\n")
    path.chmod(0o600)
    script = (
        "import fcntl, sys; f = open(sys.argv[1]); fcntl.flock(f, fcntl.LOCK_EX); "
        "print('held', flush=True); sys.stdin.read()"
    )
    other = subprocess.Popen(
        [sys.executable, "-c", script, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert other.stdout is not None
        assert other.stdout.readline() == "held\n"
        assert instance.tell(path) is None
    finally:
        other.kill()
        other.communicate()
    assert signal.sigtimedwait({instance.CHANGED}, 0) is None


def test_tell_without_a_daemon_does_nothing(tmp_path: Path, blocked: None) -> None:
    """No holder (a stale file of a daemon long gone): nobody is signalled."""
    path = Layout(str(tmp_path)).daemon_pid(str(tmp_path / "config.toml"))
    with instance.hold(path):
        pass
    assert path.read_text() == ""  # the daemon clears its PID on exit
    path.write_text(f"{os.getpid()}\n")  # as a daemon killed by SIGKILL leaves it

    assert instance.tell(path) is None
    assert signal.sigtimedwait({instance.CHANGED}, 0) is None
