"""Clock steps (issue 29): the timerfd that the kernel cancels when the wall clock is set.

This shared machine's clock must not be set, and CLOCK_REALTIME is not namespaced (a time
namespace has only monotonic and boottime offsets; the test container shares the host's clock
too), so the cancellation itself is not produced here. What is tested for real: the kernel
takes our timerfd with TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET (a wrong flag or structure
is EINVAL), an armed one does not wake us, and one that expires is read as an expiry, not a
step. ECANCELED is given to the read by a fake ``read``, and the watch's handling of a step by a
fake timer; the daemon's re-plan is driven through it.
"""

from __future__ import annotations

import errno
import os
import select
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.unit.test_daemon import JOB, World
from tvmaniac_refreshd.daemon import clock_steps

linux_only = pytest.mark.skipif(sys.platform != "linux", reason="timerfd is Linux's")
BOUND = 30.0  # seconds: a bound for a state on a busy machine, never a timing


@linux_only
class TestTheRealTimerFd:
    def test_armed_with_cancel_on_set_it_sleeps(self) -> None:
        timer = clock_steps.TimerFd()
        try:
            timer.arm(time.time() + clock_steps.HORIZON_SECONDS)
            readable, _, _ = select.select([timer.fileno()], [], [], 0)
            assert readable == []
            assert timer.read() is False  # EAGAIN: nothing happened
        finally:
            timer.close()

    def test_an_expiry_is_not_a_step(self) -> None:
        timer = clock_steps.TimerFd()
        try:
            timer.arm(time.time() - 1)  # already past: it expires at once
            readable, _, _ = select.select([timer.fileno()], [], [], BOUND)
            assert readable == [timer.fileno()]
            assert timer.read() is False
        finally:
            timer.close()


class TestTheRead:
    @staticmethod
    def failing(code: int) -> Callable[[int, int], bytes]:
        def read(_fd: int, _size: int) -> bytes:
            raise OSError(code, os.strerror(code))

        return read

    def test_ecanceled_is_a_step(self) -> None:
        assert clock_steps.read_event(3, self.failing(errno.ECANCELED)) is True

    def test_eagain_and_an_expiry_are_not(self) -> None:
        assert clock_steps.read_event(3, self.failing(errno.EAGAIN)) is False
        assert clock_steps.read_event(3, lambda _fd, _n: b"\x01" + bytes(7)) is False

    def test_another_error_is_raised(self) -> None:
        with pytest.raises(OSError, match="Bad file"):
            clock_steps.read_event(3, self.failing(errno.EBADF))


class FakeTimer:
    """A timer whose every byte written to ``step()`` reads as a cancellation (a clock step)."""

    def __init__(self) -> None:
        self._r, self._w = os.pipe()
        self.armed: list[float] = []

    def fileno(self) -> int:
        return self._r

    def arm(self, until: float) -> None:
        self.armed.append(until)

    def read(self) -> bool:
        return os.read(self._r, 1) == b"s"

    def step(self) -> None:
        os.write(self._w, b"s")

    def close(self) -> None:
        os.close(self._r)
        os.close(self._w)


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + BOUND
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)  # a bounded poll for a state


class TestTheWatch:
    def test_each_step_is_told_and_the_timer_armed_again(self) -> None:
        steps = threading.Semaphore(0)
        timer = FakeTimer()
        watch = clock_steps.ClockWatch(steps.release, timer=timer, clock=lambda: 1000.0)
        try:
            assert timer.armed == [1000.0 + clock_steps.HORIZON_SECONDS]
            timer.step()
            assert steps.acquire(timeout=BOUND)
            timer.step()
            assert steps.acquire(timeout=BOUND)
            wait_for(lambda: len(timer.armed) == 3, "armed again after each step")
        finally:
            watch.close()

    def test_a_step_replans_every_account_at_once(self, tmp_path: Path) -> None:
        """The daemon's handler (runner: on_clock_step -> Daemon.clock_stepped): the plan is
        rebuilt from the keyring on the step, not at the next wake-up."""
        world = World(tmp_path)
        world.daemon.plan_all()
        world.planner.jobs.pop(JOB)  # a plan made for the old wall clock, gone
        timer = FakeTimer()
        stepped = threading.Event()

        def on_step() -> None:
            world.daemon.clock_stepped()
            stepped.set()

        watch = clock_steps.ClockWatch(on_step, timer=timer)
        try:
            timer.step()
            assert stepped.wait(BOUND)
        finally:
            watch.close()
        assert world.planned() == world.due()
