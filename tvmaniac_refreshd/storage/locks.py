"""The one flock helper: per-account refresh locks, state-file locks, the daemon's instance lock.

An flock dies with its holder, so a killed process can never leave anything locked. The lock
file is opened through ``safe_files.open_private`` (no links, ours only) in a directory checked
by ``ensure_private_dir``, and never truncated on open.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from tvmaniac_refreshd.core.errors import UnsafeLocation
from tvmaniac_refreshd.storage.safe_files import ensure_private_dir, open_private

# How often a waiting process looks at the lock again: flock has no timeout of its own, and a
# signal-based one would interfere with the daemon's handlers.
POLL_SECONDS = 0.02


@contextlib.contextmanager
def flocked(path: Path, *, wait: float | None = None) -> Iterator[int | None]:
    """Hold an exclusive flock on ``path`` for the block and yield its descriptor.

    ``wait`` is how long to wait for another holder: None waits as long as it takes, 0 tries
    once. Yields None if the lock was not had in time.

    Raises:
        UnsafeLocation: the directory or the file is not safely ours.
        OSError: the lock file cannot be created.
    """
    deadline = None if wait is None else time.monotonic() + wait
    while True:
        ensure_private_dir(path.parent)
        fd = open_private(path, os.O_RDWR | os.O_CREAT)
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        held = _acquire(fd, left)
        if held and not _still_there(fd, path):
            # `service uninstall` removed the file while we waited (remove_unheld): a lock on
            # the removed file would not exclude a process that opens the path anew.
            os.close(fd)
            continue
        break
    try:
        yield fd if held else None
    finally:
        os.close(fd)  # closing the descriptor releases the flock


def _still_there(fd: int, path: Path) -> bool:
    try:
        named = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    opened = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (opened.st_dev, opened.st_ino)


def remove_unheld(path: Path) -> bool:
    """Remove the lock file ``path`` if no process holds it; return whether it was removed.

    It is locked first and removed while locked, so a process that opened it meanwhile finds it
    gone once it gets the lock, and locks the path anew (see ``flocked``).
    """
    try:
        fd = open_private(path, os.O_RDWR)
    except (OSError, UnsafeLocation):
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        if not _still_there(fd, path):
            return False
        path.unlink()
        return True
    finally:
        os.close(fd)


def _acquire(fd: int, wait: float | None) -> bool:
    if wait is None:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return True
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(POLL_SECONDS)
        else:
            return True


def holder_text(path: Path, limit: int = 32) -> str | None:
    """Return the start of ``path`` if some process holds its flock, else None."""
    try:
        fd = open_private(path, os.O_RDONLY)
    except (OSError, UnsafeLocation):  # nobody of ours holds a file we would not open
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return os.pread(fd, limit, 0).decode(errors="replace")
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
