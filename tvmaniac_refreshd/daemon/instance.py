"""One daemon per config: an flock held for the daemon's whole life, with its PID inside.

The PID lets the CLI tell that daemon at once when it changed an account (``tell``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

from tvmaniac_refreshd.storage.paths import ensure_private_dir

# What the CLI sends after a login, logout or refresh: lighter than SIGHUP, which re-reads the
# config; the daemon only re-plans the accounts whose state changed.
CHANGED = signal.SIGUSR1


def lock_path(state: Path, config_source: str) -> Path:
    """Return the lock file of the daemon that serves the config at ``config_source``."""
    digest = hashlib.sha256(str(Path(config_source).resolve()).encode()).hexdigest()[:12]
    return state / f"daemon-{digest}.pid"


@contextlib.contextmanager
def hold(path: Path) -> Iterator[bool]:
    """Hold the lock at ``path`` for the block; yield False if another process holds it."""
    ensure_private_dir(path.parent)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield True
    finally:
        os.close(fd)  # releases the flock; a killed daemon releases it too


def running_pid(path: Path) -> int | None:
    """Return the PID of the daemon holding ``path``, or None if no daemon holds it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 32, 0).decode(errors="replace").strip()
            return int(text) if text.isdigit() else 0
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def tell(path: Path) -> int | None:
    """Tell the daemon holding ``path`` that an account changed; return its PID if it was told.

    The PID is only read while its holder keeps the lock, so it cannot be a reused PID.
    """
    pid = running_pid(path)
    if not pid:
        return None
    try:
        os.kill(pid, CHANGED)
    except OSError:  # exited since, or someone else's process
        return None
    return pid
