"""The locks: per-account refresh locks, state-file locks, and the daemon's instance lock.

An flock or a record lock dies with its holder, so a killed process can never leave anything
locked. Every lock file is opened through ``safe_files.open_private`` in a directory checked by
``ensure_private_dir`` (parents included), and never truncated on open. The per-account lock
lives here, not with the keyring, so that a file-store run imports no keyring module.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from tvmaniac_refreshd.core.errors import (
    StateUnwritable,
    TokenInUse,
    TransientError,
    UnsafeLocation,
)
from tvmaniac_refreshd.storage.layout import in_use_file, lock_file
from tvmaniac_refreshd.storage.safe_files import ensure_private_dir, open_private

# How often a waiting process looks at the lock again: flock has no timeout of its own, and a
# signal-based one would interfere with the daemon's handlers.
POLL_SECONDS = 0.02


@contextlib.contextmanager
def flocked(path: Path, *, wait: float | None = None, shared: bool = False) -> Iterator[int | None]:
    """Hold an exclusive (or ``shared``) flock on ``path`` for the block; yield its descriptor.

    ``wait`` is how long to wait for another holder: None waits as long as it takes, 0 tries
    once. Yields None if the lock was not had in time.

    Raises:
        UnsafeLocation: the directory or the file is not safely ours, or the file was moved
            away while we waited for its lock (a lock on a file nobody else opens is none).
        OSError: the lock file cannot be created.
    """
    deadline = None if wait is None else time.monotonic() + wait
    while True:
        ensure_private_dir(path.parent)
        fd = open_private(path, os.O_RDWR | os.O_CREAT)
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        held = _acquire(fd, left, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
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
    """Return whether ``path`` still names the file locked through ``fd``; False if that file
    was removed (``remove_unheld``: lock the path anew).

    Raises:
        UnsafeLocation: the file was moved away or replaced, not removed: whoever did it can
            write the directory, and could take a lock of his own on the path meanwhile.
    """
    opened = os.fstat(fd)
    try:
        named = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        named = None
    if named is not None and (named.st_dev, named.st_ino) == (opened.st_dev, opened.st_ino):
        return True
    if opened.st_nlink == 0:
        return False
    raise UnsafeLocation(
        f"refusing to use {path.parent}: {path.name} was moved or replaced while this "
        "process waited for its lock, so another process could take a lock of its own; "
        "check who can write that directory and its parents"
    )


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
            # A daemon's PID file is held by a record lock (record_locked), not an flock.
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # BlockingIOError, or EACCES as fcntl(2) allows for a record lock
            return False
        try:
            if not _still_there(fd, path):
                return False
        except UnsafeLocation:
            return False
        path.unlink()
        return True
    finally:
        os.close(fd)


def _acquire(fd: int, wait: float | None, mode: int = fcntl.LOCK_EX) -> bool:
    if wait is None:
        fcntl.flock(fd, mode)
        return True
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(POLL_SECONDS)
        else:
            return True


@contextlib.contextmanager
def account_lock(directory: Path, account: str, *, timeout: float) -> Iterator[None]:
    """Hold the machine-wide refresh lock of ``account`` for the duration of the block.

    Raises:
        TransientError: another process held the lock for longer than ``timeout`` seconds.
        StateUnwritable: the lock file cannot be created (a read-only or full file system).
        UnsafeLocation: the lock directory or file is not safely ours.
    """
    with contextlib.ExitStack() as stack:
        try:
            fd = stack.enter_context(
                flocked(Path(lock_file(str(directory), account)), wait=timeout)
            )
        except OSError as exc:
            raise StateUnwritable(
                f"cannot write the state directory {directory} ({exc.strerror}) for the lock "
                f"of account {account!r}; free space or fix its permissions",
                account=account,
            ) from None
        if fd is None:
            raise TransientError(
                f"another tvmaniac-refreshd process has been refreshing account "
                f"{account!r} for over {timeout:.0f}s; try again later",
                account=account,
            )
        yield


# The account's "in use" lock (<state>/locks/in-use/<account>.lock): a job holds it shared
# for as long as it runs with the account's access token; a refresh takes it exclusively, right
# before it spends the refresh token (which replaces that access token), and keeps it until the
# new pair is stored. So no refresh spends a token a job still uses, in any process of the user,
# and a job that starts meanwhile waits for the new pair. The kernel drops it with its holder.


@contextlib.contextmanager
def token_in_use(directory: Path, account: str, *, wait: float) -> Iterator[None]:
    """Hold ``account``'s in-use lock shared: a job runs with its access token.

    Raises:
        TransientError: a refresh held it for longer than ``wait`` seconds.
        StateUnwritable: the lock file cannot be created.
        UnsafeLocation: the lock directory or file is not safely ours.
    """
    with _in_use(directory, account, wait=wait, shared=True) as fd:
        if fd is None:
            raise TransientError(
                f"account {account!r} has been refreshing for over {wait:.0f}s; "
                "the job was not started; try again later",
                account=account,
            )
        yield


@contextlib.contextmanager
def token_spendable(directory: Path, account: str, *, wait: float) -> Iterator[None]:
    """Hold ``account``'s in-use lock exclusively: no job runs with its access token.

    Raises:
        TokenInUse: a job still held it after ``wait`` seconds.
        StateUnwritable, UnsafeLocation: as ``token_in_use``.
    """
    with _in_use(directory, account, wait=wait, shared=False) as fd:
        if fd is None:
            waited = f" (waited {wait:.0f}s)" if wait else ""
            raise TokenInUse(
                f"a job is running with account {account!r}'s access token{waited}, and a "
                "refresh would replace it: the refresh waits until the job ends "
                "(`tvmaniac-refreshd job list`); try again then",
                account=account,
            )
        yield


def wait_until_unused(directory: Path, account: str) -> None:
    """Return once no job holds ``account``'s in-use lock (blocks; for a watcher thread).

    Raises:
        StateUnwritable, UnsafeLocation: as ``token_in_use``.
    """
    with _in_use(directory, account, wait=None, shared=False):
        pass  # had it exclusively for a moment: every job that held it has ended


@contextlib.contextmanager
def _in_use(
    directory: Path, account: str, *, wait: float | None, shared: bool
) -> Iterator[int | None]:
    with contextlib.ExitStack() as stack:
        try:
            fd = stack.enter_context(
                flocked(Path(in_use_file(str(directory), account)), wait=wait, shared=shared)
            )
        except OSError as exc:
            raise StateUnwritable(
                f"cannot write the state directory {directory} ({exc.strerror}) for the "
                f"in-use lock of account {account!r}; free space or fix its permissions",
                account=account,
            ) from None
        yield fd


# struct flock, field order per platform (fcntl(2)): Linux puts the type first, the BSDs last.
if sys.platform.startswith("linux"):
    _FLOCK = "hhqqi4x"

    def _pack(kind: int) -> bytes:
        return struct.pack(_FLOCK, kind, os.SEEK_SET, 0, 0, 0)

    def _unpack(data: bytes) -> tuple[int, int]:
        kind, _, _, _, pid = struct.unpack(_FLOCK, data)
        return kind, pid

else:
    _FLOCK = "qqihh"

    def _pack(kind: int) -> bytes:
        return struct.pack(_FLOCK, 0, 0, 0, kind, os.SEEK_SET)

    def _unpack(data: bytes) -> tuple[int, int]:
        _, _, pid, kind, _ = struct.unpack(_FLOCK, data)
        return kind, pid


@contextlib.contextmanager
def record_locked(path: Path) -> Iterator[int | None]:
    """Try once to hold an exclusive record lock (``fcntl`` F_SETLK) on ``path`` for the block.

    Yields its descriptor, or None if another process holds it. Unlike an flock, a record lock
    names its holder to anyone who asks (``record_holder``), in the asker's PID namespace, and
    it is released when the holder exits: a PID read from it is the living holder's. So the
    process that holds it must never open and close ``path`` elsewhere meanwhile.

    Raises:
        UnsafeLocation: the directory or the file is not safely ours.
        OSError: the lock file cannot be created.
    """
    fd = _record_lock(path)
    if fd is None:
        yield None
        return
    try:
        yield fd
    finally:
        os.close(fd)  # closing the descriptor releases the record lock


def _record_lock(path: Path) -> int | None:
    while True:
        ensure_private_dir(path.parent)
        fd = open_private(path, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if _still_there(fd, path):
                return fd
        except OSError:  # EAGAIN or EACCES, as fcntl(2) allows either: another holder
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # removed (remove_unheld) before we locked it: lock the path anew


def record_holder(path: Path) -> int | None:
    """Return the PID of the process holding ``path``'s record lock, 0 if it is held by a
    process outside this PID namespace, or None if nobody of ours holds it."""
    try:
        fd = open_private(path, os.O_RDONLY)
    except (OSError, UnsafeLocation):  # nobody of ours holds a file we would not open
        return None
    try:
        kind, pid = _unpack(fcntl.fcntl(fd, fcntl.F_GETLK, _pack(fcntl.F_WRLCK)))
    except OSError:
        return None
    finally:
        os.close(fd)
    return None if kind == fcntl.F_UNLCK else max(pid, 0)
