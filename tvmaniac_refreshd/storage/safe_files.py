"""Private directories and files that another local user cannot redirect, plant, hold or hang.

The threat: another account on the same machine. It can pre-create a directory we would use,
own or be able to write a parent of it (and so rename our ``locks/`` from under a held flock),
put a symbolic link named like our file, plant a FIFO whose ``open`` never returns, or hold a
lock on a file it made world-writable. One policy answers all of it, for every directory and
file of the storage layer (state, locks, the quick record, PID files, the file store):

- a directory is checked with its parents up to the first one of ours, *before* anything is
  created in it: no parent another user owns or can write (a sticky one, as /tmp, is fine: its
  other users cannot move our entries), and the directory itself a real directory of ours that
  nobody else can write (group or other read bits are removed);
- a file is opened with ``O_NOFOLLOW | O_NONBLOCK`` (a FIFO opens at once and is then refused)
  and used only if it is a regular file of ours with no group or other bits;
- a write is atomic and durable: temporary file, fsync, rename, fsync of the directory.

Strings and ``os`` only (``os.PathLike`` is taken too): the quick `token` path uses it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import time

from tvmaniac_refreshd.core.errors import UnsafeLocation

PathArg = str | os.PathLike[str]

DIR_MODE = 0o700
FILE_MODE = 0o600
# Older than this, a temporary file is no write in progress but a killed writer's leftover.
STALE_TEMP_SECONDS = 60
_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_OPEN_FILE = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_OTHERS_WRITE = stat.S_IWGRP | stat.S_IWOTH

__all__ = [
    "UnsafeLocation",
    "check_parents",
    "delete_private_file",
    "ensure_private_dir",
    "is_private_dir",
    "open_private",
    "open_private_dir",
    "read_private_file",
    "read_private_text",
    "write_atomically",
    "write_private_file",
]


def _refuse(path: str, why: str) -> UnsafeLocation:
    return UnsafeLocation(
        f"refusing to use {path}: {why}. Another local user could redirect, read or block our "
        "files there; nothing was stored"
    )


def _private_group(gid: int) -> bool:
    """Whether ``gid`` is this user's own group with nobody else in it (umask 002 systems)."""
    import grp  # noqa: PLC0415
    import pwd  # noqa: PLC0415

    try:
        user = pwd.getpwuid(os.geteuid())
        group = grp.getgrgid(gid)
    except KeyError:
        return False
    return gid == user.pw_gid and group.gr_mem in ([], [user.pw_name])


def parent_problem(path: PathArg) -> str | None:
    """Return why a parent of ``path``, up to the first one of ours, is unsafe, else None."""
    uid = os.geteuid()
    current = os.path.abspath(os.fspath(path))
    while True:
        parent = os.path.dirname(current)
        if parent == current:
            return None
        current = parent
        try:
            info = os.stat(current)
        except OSError:
            continue  # not there yet: we create it, as ours
        if info.st_uid not in (uid, 0):
            return f"its parent {current} belongs to uid {info.st_uid}, not to this user"
        writable = info.st_mode & _OTHERS_WRITE and not info.st_mode & stat.S_ISVTX
        if writable and (info.st_mode & stat.S_IWOTH or not _private_group(info.st_gid)):
            mode = stat.S_IMODE(info.st_mode)
            return (
                f"its parent {current} is writable by other users (mode {mode:04o}); "
                f"fix it with: chmod go-w {current}"
            )
        if info.st_uid == uid:
            return None


def check_parents(path: PathArg) -> None:
    """Raise UnsafeLocation if a parent of ``path`` up to the first one of ours is unsafe."""
    problem = parent_problem(path)
    if problem is not None:
        raise _refuse(os.fspath(path), problem)


def is_private_dir(path: PathArg) -> bool:
    """Return whether ``path`` is a real directory of ours that nobody else can write, in
    parents that pass ``check_parents``. Never creates anything."""
    try:
        info = os.lstat(path)
    except OSError:
        return False
    return (
        stat.S_ISDIR(info.st_mode)
        and info.st_uid == os.geteuid()
        and not info.st_mode & _OTHERS_WRITE
        and parent_problem(path) is None
    )


def open_private_dir(path: PathArg) -> int:
    """Check ``path``'s parents, create it (0700, with any missing parents) if needed, and
    return a descriptor of it, checked safe (module docstring).

    Raises:
        UnsafeLocation: a parent or the directory is not safely ours.
        OSError: it cannot be created or opened.
    """
    text = os.fspath(path)
    check_parents(text)
    os.makedirs(os.path.dirname(os.path.abspath(text)), mode=DIR_MODE, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.mkdir(text, DIR_MODE)
    try:
        fd = os.open(text, _OPEN_DIR)
    except OSError as exc:
        if os.path.islink(text):
            raise _refuse(text, "it is a symbolic link") from None
        if exc.errno == errno.ENOTDIR:
            raise _refuse(text, "it is not a directory") from None
        raise
    try:
        _check_dir(fd, text)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _check_dir(fd: int, text: str) -> None:
    info = os.fstat(fd)
    if info.st_uid != os.geteuid():
        raise _refuse(text, f"it belongs to uid {info.st_uid}, not to this user")
    if info.st_mode & _OTHERS_WRITE:
        mode = stat.S_IMODE(info.st_mode)
        raise _refuse(
            text, f"it is writable by other users (mode {mode:04o}); fix it: chmod 700 {text}"
        )
    if stat.S_IMODE(info.st_mode) != DIR_MODE:
        os.fchmod(fd, DIR_MODE)


def ensure_private_dir(path: PathArg) -> PathArg:
    """Create and check ``path`` as ``open_private_dir`` does, and return it."""
    os.close(open_private_dir(path))
    return path


def _check_file(fd: int, name: str) -> None:
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
        raise _refuse(name, "it is not a regular file of this user; remove it")
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise _refuse(
            name,
            f"it is accessible to other users (mode {stat.S_IMODE(info.st_mode):04o}); "
            "chmod 600 it, and treat what it holds as exposed",
        )


def _open_file(name: str, flags: int, dir_fd: int | None) -> int:
    """Open ``name`` under the policy and return a descriptor of a checked regular file."""
    try:
        fd = os.open(name, flags | _OPEN_FILE, FILE_MODE, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # O_NOFOLLOW met a symlink
            raise _refuse(name, "it is a symbolic link") from None
        raise
    try:
        _check_file(fd, name)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_private(path: PathArg, flags: int) -> int:
    """Open ``path`` with ``flags`` (``O_CREAT`` makes it 0600) under the policy.

    Raises:
        UnsafeLocation: ``path`` is a link, not a regular file (a FIFO...), or not ours alone.
        OSError: anything else, e.g. ``FileNotFoundError``.
    """
    return _open_file(os.fspath(path), flags, None)


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


def read_private_text(path: PathArg) -> str:
    """Return the text of a file of ours (see ``open_private``)."""
    fd = open_private(path, os.O_RDONLY)
    try:
        return _read_all(fd).decode("utf-8")
    finally:
        os.close(fd)


def read_private_file(dir_fd: int, name: str) -> bytes | None:
    """Return the content of ``name`` in the directory, or None if it does not exist.

    Raises:
        UnsafeLocation: the file breaks the policy.
        OSError: it cannot be read.
    """
    try:
        fd = _open_file(name, os.O_RDONLY, dir_fd)
    except FileNotFoundError:
        return None
    try:
        return _read_all(fd)
    finally:
        os.close(fd)


def write_private_file(
    dir_fd: int, name: str, data: bytes, *, mode: int = FILE_MODE, durable: bool = True
) -> None:
    """Replace ``name`` with ``data`` so that a crash at any point leaves the old or the new
    content, never a truncated or empty file, and the new one survives a power cut once this
    returns.

    The temporary file (``.<name>.<random>.tmp``) is created exclusively, so it can never be a
    link someone planted, and the rename replaces a link rather than writing through it.
    Leftovers of killed writers are swept first. ``mode`` is the new file's (a service unit is
    0644; everything else keeps the default). ``durable=False`` leaves out the directory's sync:
    the content is synced, so a power cut still leaves the old file or the new one, but the new
    one may be lost (for what is written again anyway, as the daemon's planned times).

    Raises:
        OSError: the write failed (full disk, read-only file system...); the old file is intact.
    """
    _sweep(dir_fd)
    temporary = f".{name}.{os.urandom(6).hex()}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(temporary, flags, mode, dir_fd=dir_fd)
    if mode & ~FILE_MODE:
        os.fchmod(fd, mode)  # past the umask: the service manager must read a unit
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
    if durable:
        os.fsync(dir_fd)


def write_atomically(
    path: PathArg, content: str | bytes, *, mode: int = FILE_MODE, durable: bool = True
) -> None:
    """Write ``content`` to ``path`` as ``write_private_file`` does. The caller makes sure
    the directory is one to trust (``ensure_private_dir``).

    Raises:
        OSError: the directory cannot be written (full disk, quota, read-only).
    """
    text = os.fspath(path)
    data = content.encode("utf-8") if isinstance(content, str) else content
    # A link is followed here: a unit directory may be one (dotfiles); state never calls this
    # on a directory it did not check.
    directory = os.open(os.path.dirname(text) or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        write_private_file(directory, os.path.basename(text), data, mode=mode, durable=durable)
    finally:
        os.close(directory)


def delete_private_file(dir_fd: int, name: str) -> bool:
    """Delete ``name``; return whether it existed. The deletion is made durable."""
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return False
    os.fsync(dir_fd)
    return True


# When each directory (device, inode) was last swept by this process. A leftover is a killed
# writer's, rare and harmless until swept: listing a state directory of a thousand accounts
# before each of a thousand writes made the daemon's first plan quadratic.
_swept: dict[tuple[int, int], float] = {}
_TEMPORARY = re.compile(r"\..+\.[0-9a-f]{12}\.tmp")  # write_private_file's, for any name


def _sweep(dir_fd: int) -> None:
    """Remove every writer's leftover older than STALE_TEMP_SECONDS in the directory, at most
    once per STALE_TEMP_SECONDS per directory and process."""
    now = time.time()
    info = os.fstat(dir_fd)
    key = (info.st_dev, info.st_ino)
    if now - _swept.get(key, 0.0) < STALE_TEMP_SECONDS:
        return
    _swept[key] = now
    cutoff = now - STALE_TEMP_SECONDS
    for entry in os.listdir(dir_fd):
        if _TEMPORARY.fullmatch(entry):
            with contextlib.suppress(OSError):
                if os.stat(entry, dir_fd=dir_fd, follow_symlinks=False).st_mtime < cutoff:
                    os.unlink(entry, dir_fd=dir_fd)
