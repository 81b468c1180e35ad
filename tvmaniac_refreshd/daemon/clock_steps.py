"""Wall-clock steps heard from the kernel: a timerfd armed with TFD_TIMER_CANCEL_ON_SET.

With event sources the daemon has no periodic tick, so a step of the wall clock (an NTP client
setting it at boot, a user's `date -s`) would be noticed only at the next wake-up, up to an hour
later, while every refresh is planned in wall-clock time. The kernel cancels such a timer
whenever CLOCK_REALTIME is set (and, on recent kernels, after a resume): a read then fails with
ECANCELED. A thread asleep in ``select`` on it costs no wake-up until that happens; the timer is
armed years ahead, so it never simply expires (and is re-armed if it does).

Python has ``os.timerfd_create`` only from 3.13; before that, two calls of libc through ctypes
(Linux only; the glibc and musl signatures are the same).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import select
import threading
import time
from collections.abc import Callable
from typing import Protocol

from tvmaniac_refreshd.core.logs import get_logger

NAME = "timerfd"
CLOCK_REALTIME = 0
TFD_CLOEXEC = os.O_CLOEXEC
TFD_NONBLOCK = os.O_NONBLOCK
TFD_TIMER_ABSTIME = 1
TFD_TIMER_CANCEL_ON_SET = 2
HORIZON_SECONDS = 10 * 365 * 86400  # how far ahead the timer is armed: it is never meant to fire


class ClockStepsUnavailable(Exception):  # not an error of ours: "this source is not there"
    """No timerfd (not Linux, or a libc without it)."""


class _Timespec(ctypes.Structure):
    _fields_ = (("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long))


class _Itimerspec(ctypes.Structure):
    _fields_ = (("it_interval", _Timespec), ("it_value", _Timespec))


class Timer(Protocol):
    """What ``ClockWatch`` needs of a timer (a fake stands in for it in the unit tests)."""

    def fileno(self) -> int: ...

    def arm(self, until: float) -> None: ...

    def read(self) -> bool: ...

    def close(self) -> None: ...


class TimerFd:
    """A CLOCK_REALTIME timerfd that the kernel cancels when the clock is set."""

    def __init__(self) -> None:
        try:
            # The process's own symbols, libc's among them: find_library would run ldconfig.
            libc = ctypes.CDLL(None, use_errno=True)
            create, self._settime = libc.timerfd_create, libc.timerfd_settime
        except (OSError, AttributeError) as exc:  # no libc of that name, or no timerfd in it
            raise ClockStepsUnavailable(f"no timerfd: {exc}") from None
        create.argtypes, create.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
        self._settime.argtypes = (
            ctypes.c_int,
            ctypes.c_int,
            ctypes.POINTER(_Itimerspec),
            ctypes.POINTER(_Itimerspec),
        )
        self._settime.restype = ctypes.c_int
        self._fd: int = create(CLOCK_REALTIME, TFD_CLOEXEC | TFD_NONBLOCK)
        if self._fd < 0:
            raise ClockStepsUnavailable(f"timerfd_create: {os.strerror(ctypes.get_errno())}")

    def fileno(self) -> int:
        return self._fd

    def arm(self, until: float) -> None:
        """Expire at unix time ``until``, or be cancelled as soon as the clock is set."""
        value = _Itimerspec(_Timespec(0, 0), _Timespec(int(until), 0))
        flags = TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET
        if self._settime(self._fd, flags, ctypes.byref(value), None) < 0:
            raise ClockStepsUnavailable(f"timerfd_settime: {os.strerror(ctypes.get_errno())}")

    def read(self) -> bool:
        """Consume what woke us: True if the clock was set, False if the timer expired (or
        nothing is there). It stays cancelled until armed again."""
        return read_event(self._fd)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)


def read_event(fd: int, read: Callable[[int, int], bytes] = os.read) -> bool:
    """A timerfd's read: 8 bytes (the expiry count), ECANCELED (the clock was set) or EAGAIN."""
    try:
        read(fd, 8)
    except OSError as exc:
        if exc.errno == errno.ECANCELED:
            return True
        if exc.errno == errno.EAGAIN:
            return False
        raise
    return False


class ClockWatch:
    """A thread asleep on the timer; ``on_step()`` after each step of the wall clock."""

    def __init__(
        self,
        on_step: Callable[[], object],
        *,
        timer: Timer | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._timer = timer if timer is not None else TimerFd()
        self._clock = clock
        self._on_step = on_step
        self._timer.arm(clock() + HORIZON_SECONDS)
        self._wake_r, self._wake_w = os.pipe()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="watch clock", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        log = get_logger()
        while not self._closed:
            try:
                readable, _, _ = select.select([self._timer.fileno(), self._wake_r], [], [])
                if self._closed or self._wake_r in readable:
                    return
                stepped = self._timer.read()
                self._timer.arm(self._clock() + HORIZON_SECONDS)  # cancelled or expired: again
            except (OSError, ClockStepsUnavailable) as exc:
                if not self._closed:
                    log.warning("events.clock_watch_lost", error=str(exc))
                return
            if stepped:
                try:
                    self._on_step()
                except Exception as exc:  # a bug in the handler must not end the watch
                    log.exception("events.handler_failed", service=NAME, error=repr(exc))

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        self._thread.join(5)
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._timer.close()
