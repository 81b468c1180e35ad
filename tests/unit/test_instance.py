"""The per-config instance lock, and the CLI telling the daemon that holds it."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tvmaniac_refreshd.daemon import instance


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


def test_tell_signals_the_holder_of_the_lock(tmp_path: Path, blocked: None) -> None:
    path = instance.lock_path(tmp_path, str(tmp_path / "config.toml"))
    with instance.hold(path) as held:
        assert held
        assert instance.tell(path) == os.getpid()
        taken = signal.sigtimedwait({instance.CHANGED}, 5)

    assert taken is not None
    assert taken.si_signo == instance.CHANGED


def test_tell_without_a_daemon_does_nothing(tmp_path: Path, blocked: None) -> None:
    """No holder (a stale file of a daemon long gone): nobody is signalled."""
    path = instance.lock_path(tmp_path, str(tmp_path / "config.toml"))
    with instance.hold(path):
        pass
    assert path.read_text().strip() == str(os.getpid())  # the stale PID is still written

    assert instance.tell(path) is None
    assert signal.sigtimedwait({instance.CHANGED}, 0) is None
