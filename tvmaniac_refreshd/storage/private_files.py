"""Private files in a private directory: opened without following symlinks, written atomically
and durably (temporary file, fsync, rename, fsync of the directory).

Every call works relative to a directory descriptor, so that nobody can swap a path component
for a symlink between a check and a write. Raises ``OSError``; the caller says what failed.

Kept apart from the file store so that one atomic-write and one safe-directory helper can serve
the whole storage layer (state files and locks may move onto it).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
import time
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600
# Older than this, a temporary file is no write in progress but a killed writer's leftover.
STALE_TEMP_SECONDS = 60
_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafeLocation(OSError):
    """A directory or file is a symlink, someone else's, or writable by others."""


def open_private_dir(path: Path) -> int:
    """Create ``path`` (mode 0700) if needed and return a descriptor of it, checked safe.

    The parents are created as ``mkdir -p`` would (0700); the directory itself must not be a
    symlink, must belong to this user, and must not be writable by group or others: such a
    directory would let another user replace our files. Group or other read bits on our own
    directory are removed.

    Raises:
        UnsafeLocation: the directory is a symlink, foreign, or group/other-writable.
        OSError: it cannot be created or opened.
    """
    path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, DIR_MODE)
    try:
        fd = os.open(path, _OPEN_DIR)
    except OSError as exc:
        if os.path.islink(path):
            raise UnsafeLocation(f"{path} is a symbolic link; refusing to follow it") from exc
        raise
    try:
        _check_dir(fd, path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _check_dir(fd: int, path: Path) -> None:
    info = os.fstat(fd)
    if info.st_uid != os.geteuid():
        raise UnsafeLocation(f"{path} belongs to uid {info.st_uid}, not to this user")
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UnsafeLocation(
            f"{path} is writable by other users (mode {stat.S_IMODE(info.st_mode):04o}); "
            f"refusing to keep secrets there. Fix it with: chmod 700 {path}"
        )
    if stat.S_IMODE(info.st_mode) != DIR_MODE:
        os.fchmod(fd, DIR_MODE)


def _check_file(fd: int, name: str) -> None:
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
        raise UnsafeLocation(f"{name} is not a regular file of this user")
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise UnsafeLocation(
            f"{name} is accessible to other users (mode {stat.S_IMODE(info.st_mode):04o}); "
            "chmod 600 it, and treat what it holds as exposed"
        )


def read_private_file(dir_fd: int, name: str) -> bytes | None:
    """Return the content of ``name`` in the directory, or None if it does not exist.

    Raises:
        UnsafeLocation: the file is a symlink, not a regular file, foreign, or readable by others.
        OSError: it cannot be read.
    """
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # O_NOFOLLOW met a symlink
            raise UnsafeLocation(f"{name} is a symbolic link; refusing to follow it") from exc
        raise
    try:
        _check_file(fd, name)
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def write_private_file(dir_fd: int, name: str, data: bytes) -> None:
    """Replace ``name`` with ``data`` so that a crash at any point leaves the old or the new
    content, never a truncated or empty file, and the new one survives a power cut once this
    returns.

    Leftover temporaries of killed writers (``.<name>.<random>.tmp``) are swept first.

    Raises:
        OSError: the write failed (full disk, read-only file system...); the old file is intact.
    """
    _sweep(dir_fd, name)
    temporary = f".{name}.{secrets.token_hex(6)}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(temporary, flags, FILE_MODE, dir_fd=dir_fd)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(temporary, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary, dir_fd=dir_fd)
        raise
    # The rename is durable only once the directory entry is on disk.
    os.fsync(dir_fd)


def delete_private_file(dir_fd: int, name: str) -> bool:
    """Delete ``name``; return whether it existed. The deletion is made durable."""
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return False
    os.fsync(dir_fd)
    return True


def _sweep(dir_fd: int, name: str) -> None:
    cutoff = time.time() - STALE_TEMP_SECONDS
    prefix = f".{name}."
    for entry in os.listdir(dir_fd):
        if entry.startswith(prefix) and entry.endswith(".tmp"):
            with contextlib.suppress(OSError):
                if os.stat(entry, dir_fd=dir_fd, follow_symlinks=False).st_mtime < cutoff:
                    os.unlink(entry, dir_fd=dir_fd)
