"""One daemon per config: a record lock held for the daemon's whole life, with its PID inside.

The PID lets the CLI tell that daemon at once when it changed an account (``tell``). It is
taken from the kernel, not from the file: the record lock names its living holder in the
asker's PID namespace (storage/locks.py). The PID written in the file was trusted once, and a
daemon killed by SIGKILL left its PID behind for another process to inherit and be sent
SIGUSR1, whose default action ends it; in another PID namespace (a toolbox sharing the state
directory) it named some other process. The file's text is kept for people, and emptied on
exit.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

from tvmaniac_refreshd.storage.locks import record_holder, record_locked

# What the CLI sends after a login, logout or refresh: lighter than SIGHUP, which re-reads the
# config; the daemon only re-plans the accounts whose state changed.
CHANGED = signal.SIGUSR1


@contextlib.contextmanager
def hold(path: Path) -> Iterator[bool]:
    """Hold the lock at ``path`` for the block; yield False if another process holds it."""
    with record_locked(path) as fd:
        if fd is None:
            yield False
            return
        # Truncating only now, holding the lock, on a file open_private checked is ours.
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield True
        finally:
            os.ftruncate(fd, 0)  # no PID outlives the daemon that wrote it


def running_pid(path: Path) -> int | None:
    """Return the PID of the daemon holding ``path``: 0 if it runs in another PID namespace,
    None if no daemon holds it."""
    return record_holder(path)


def tell(path: Path) -> int | None:
    """Tell the daemon holding ``path`` that an account changed; return its PID if it was told.

    Only a process proven to hold the lock is signalled: on Linux through a pidfd taken
    before the holder is asked again, so the PID cannot be reused between the check and the
    signal.
    """
    pid = running_pid(path)
    if not pid:
        return None
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):  # not Linux, or no pidfd: the kernel's answer stands
        pidfd = None
    try:
        if running_pid(path) != pid:  # it exited, and maybe another process has its PID
            return None
        if pidfd is not None:
            signal.pidfd_send_signal(pidfd, CHANGED)
        else:
            os.kill(pid, CHANGED)
    except OSError:  # exited since
        return None
    finally:
        if pidfd is not None:
            os.close(pidfd)
    return pid
