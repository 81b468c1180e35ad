"""Private directories and files that another local user cannot redirect, plant or hold.

The threat: another account on the same machine. It can pre-create a directory we would use
(``/tmp/tvmaniac-refreshd`` when ``$XDG_RUNTIME_DIR`` is ``/tmp``), put a symbolic link in it
named like our file, or hold a lock on a file it made world-writable. So every directory is
checked *after* ``mkdir`` (which succeeds on an existing directory, whoever made it): ours,
a real directory, writable by nobody else; and every file is opened with ``O_NOFOLLOW`` and
checked to be a regular file of ours before we read, lock or write it.

The directory check and the atomic write are private_files.py's (the file store's), so the
storage layer has one of each; this module gives them the project's errors and paths, and adds
the safe open that storage/locks.py builds the one flock helper on.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from tvmaniac_refreshd.core.errors import UnsafeLocation
from tvmaniac_refreshd.storage import private_files


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) readable only by this user, check it, and return it.

    The check is private_files.open_private_dir's (the file store's): ours, a real directory,
    writable by nobody else.

    Raises:
        UnsafeLocation: ``path`` is a link, not a directory, another user's, or writable by
            group or others.
        OSError: it cannot be created (a full disk, a read-only file system).
    """
    try:
        fd = private_files.open_private_dir(path)
    except private_files.UnsafeLocation as exc:
        raise UnsafeLocation(
            f"{exc}. Refusing to use it: another local user could redirect or block our files "
            "there. Remove it, or point XDG_STATE_HOME / XDG_RUNTIME_DIR at a directory of "
            "your own"
        ) from None
    except NotADirectoryError:
        raise UnsafeLocation(f"refusing to use {path}: it is not a directory") from None
    os.close(fd)
    return path


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

    private_files.write_private_file does it (the one atomic write of the storage layer): a
    new temporary file, created exclusively so that it can never be a link someone planted,
    fsync, rename (which replaces a link, never writes through one), fsync of the directory.
    The caller makes sure the directory is one to trust (``ensure_private_dir``).

    Raises:
        OSError: the directory cannot be written (full disk, quota, read-only).
    """
    data = content.encode("utf-8") if isinstance(content, str) else content
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        private_files.write_private_file(directory, path.name, data, mode=mode)
    finally:
        os.close(directory)
