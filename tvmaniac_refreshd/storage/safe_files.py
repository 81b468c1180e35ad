"""Private directories and files that another local user cannot redirect, plant or hold.

The threat: another account on the same machine. It can pre-create a directory we would use
(``/tmp/tvmaniac-refreshd`` when ``$XDG_RUNTIME_DIR`` is ``/tmp``), put a symbolic link in it
named like our file, or hold a lock on a file it made world-writable. So every directory is
checked *after* ``mkdir`` (which succeeds on an existing directory, whoever made it): ours,
a real directory, writable by nobody else; and every file is opened with ``O_NOFOLLOW`` and
checked to be a regular file of ours before we read, lock or write it.

These are the project's one atomic-write helper and its one safe-open helper; storage/locks.py
builds the one flock helper on them.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
import time
from pathlib import Path

from tvmaniac_refreshd.core.errors import UnsafeLocation
from tvmaniac_refreshd.core.locations import is_private_dir

# Older than this, a temporary file is no write in progress but a crash's leftover.
STALE_TEMP_SECONDS = 60


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) readable only by this user, check it, and return it.

    Raises:
        UnsafeLocation: ``path`` is a link, not a directory, another user's, or writable by
            group or others.
        OSError: it cannot be created (a full disk, a read-only file system).
    """
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    check_private_dir(path)
    return path


def check_private_dir(path: Path) -> None:
    """Raise UnsafeLocation unless ``path`` is a real directory of ours nobody else can write."""
    if is_private_dir(str(path)):
        return
    try:
        info = os.lstat(path)
    except OSError:
        raise UnsafeLocation(f"{path} vanished while it was being checked") from None
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        problem = "is a symbolic link or not a directory"
    elif info.st_uid != os.geteuid():
        problem = f"belongs to another user (uid {info.st_uid})"
    else:
        problem = "is writable by group or others (`chmod go-w` it)"
    raise UnsafeLocation(
        f"refusing to use {path}: it {problem}; another local user could redirect or block "
        "our files there. Remove it, or point XDG_STATE_HOME / XDG_RUNTIME_DIR at a directory "
        "of your own"
    )


def open_private(path: Path, flags: int) -> int:
    """Open ``path`` with ``flags`` (``O_CREAT`` makes it 0600), never through a link.

    Raises:
        UnsafeLocation: ``path`` is a link, not a regular file, or another user's file.
        OSError: anything else, e.g. ``FileNotFoundError``.
    """
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        if os.path.islink(path):
            raise UnsafeLocation(f"refusing to open {path}: it is a symbolic link") from None
        raise exc from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
        os.close(fd)
        raise UnsafeLocation(
            f"refusing to use {path}: it is not a regular file of this user; remove it"
        )
    return fd


def read_private_text(path: Path) -> str:
    """Return the text of a file of ours (see ``open_private``)."""
    with os.fdopen(open_private(path, os.O_RDONLY), encoding="utf-8") as handle:
        return handle.read()


def write_atomically(path: Path, content: str | bytes, *, mode: int = 0o600) -> None:
    """Write ``content`` to ``path`` so that a crash leaves the old or the new file, never half.

    The temporary file (``.<name>.<random>.tmp`` next to ``path``) is created exclusively, so
    it can never be a link someone planted; ``os.replace`` swaps the link, never writes through
    one. Temporary files a killed process left behind are swept first. The caller makes sure
    the directory is one to trust (``ensure_private_dir``).

    Raises:
        OSError: the directory cannot be written (full disk, quota, read-only).
    """
    data = content.encode("utf-8") if isinstance(content, str) else content
    directory = path.parent
    cutoff = time.time() - STALE_TEMP_SECONDS
    for leftover in directory.glob(f".{path.stem}.*.tmp"):
        with contextlib.suppress(OSError):
            if leftover.lstat().st_mtime < cutoff:
                leftover.unlink()
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
