"""Non-secret per-account state, kept as one small JSON file per account; never a token.

It holds what `status` shows (last result, last error) and what must survive a process: that an
account needs a new login, and that a refresh was in flight when its process died.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import TypedDict, Unpack

from tvmaniac_refreshd.core.errors import StateUnwritable, UnsafeLocation
from tvmaniac_refreshd.storage.layout import Layout
from tvmaniac_refreshd.storage.locks import flocked
from tvmaniac_refreshd.storage.safe_files import (
    ensure_private_dir,
    read_private_text,
    write_atomically,
)

STATE_VERSION = 1


def token_digest(token: str) -> str:
    """Return a short one-way digest that tells refresh tokens apart without revealing them."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]


class RefreshResult(StrEnum):
    """How the last refresh attempt ended; the value is what the state file and `status` show."""

    REFRESHED = "refreshed"
    TRANSIENT = "transient"  # try again later; the tokens were kept
    REJECTED = "rejected"  # the provider rejected the refresh token: `login`
    FAILED = "failed"  # any other refusal; the tokens were kept


@dataclass(frozen=True)
class AccountRecord:
    """What we remember about an account besides its tokens."""

    last_attempt_at: int | None = None
    last_success_at: int | None = None
    last_result: RefreshResult | None = None
    last_error: str | None = None
    consecutive_failures: int = 0
    # Digest of the refresh token the provider rejected; a new login writes a different one.
    reauth_token: str | None = None
    reauth_reason: str | None = None
    # Digest of the refresh token being spent right now; left behind only by a crash.
    in_flight_token: str | None = None
    in_flight_since: int | None = None
    # When the daemon plans to try next (due time, or a retry after a failure).
    next_attempt_at: int | None = None
    # Since when the daemon holds a due refresh until the network is back; None: it does not.
    waiting_for_network_since: int | None = None
    # Which network source said offline (NetworkManager, systemd-networkd, netlink): the
    # daemon follows the next one when a source leaves the bus, so `status` names it.
    waiting_for_network_source: str | None = None
    # The jobs (comma-separated; "" if unknown) a due refresh waits for: they use the token.
    waiting_for_job: str | None = None
    # Alerts told by a pass of `refresh --all` (timer mode), kept between passes: when the
    # current run of failures began, and when each standing alert was last told.
    failing_since: int | None = None
    told_reauth_at: int | None = None
    told_error_at: int | None = None
    # Who the provider says logged in (its user name), asked right after the login.
    logged_in_as: str | None = None

    def needs_reauth(self, refresh_token: str) -> bool:
        """Return whether ``refresh_token`` is the one the provider rejected."""
        return self.reauth_token is not None and self.reauth_token == token_digest(refresh_token)


class RecordChanges(TypedDict, total=False):
    """The fields of AccountRecord that ``StateFiles.update`` may change, with their types."""

    last_attempt_at: int | None
    last_success_at: int | None
    last_result: RefreshResult | None
    last_error: str | None
    consecutive_failures: int
    reauth_token: str | None
    reauth_reason: str | None
    in_flight_token: str | None
    in_flight_since: int | None
    next_attempt_at: int | None
    waiting_for_network_since: int | None
    waiting_for_network_source: str | None
    waiting_for_job: str | None
    failing_since: int | None
    told_reauth_at: int | None
    told_error_at: int | None
    logged_in_as: str | None


class StateFiles:
    """Reads and atomically writes ``<state_dir>/<account>.json``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._layout = Layout(str(directory))

    def check(self) -> StateFiles:
        """Check the directory and its parents (safe_files.py's policy), creating it if needed,
        before anything is read or stored there; return self.

        Raises:
            UnsafeLocation: another user owns or can write it or a parent (exit 78).
        """
        # A directory that cannot be made (read-only, full) is StateUnwritable when written.
        with contextlib.suppress(OSError):
            ensure_private_dir(self.directory)
        return self

    def _path(self, account: str) -> Path:
        return self._layout.state_file(account)

    def load(self, account: str) -> AccountRecord:
        """Return the record of ``account``; an absent or unreadable file is a blank record."""
        try:
            data = json.loads(read_private_text(self._path(account)))
        except (OSError, ValueError, UnsafeLocation):
            return AccountRecord()
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
            return AccountRecord()
        known = set(AccountRecord.__dataclass_fields__)
        values = {key: value for key, value in data.items() if key in known}
        result = values.get("last_result")
        # A result this version does not know (written by a newer one) reads as none.
        values["last_result"] = RefreshResult(result) if result in set(RefreshResult) else None
        try:
            return AccountRecord(**values)
        except TypeError:
            return AccountRecord()

    def save(self, account: str, record: AccountRecord, *, durable: bool = True) -> None:
        """Write ``record`` so that a crash leaves either the old or the new file, never half
        (``durable=False``: and a power cut may leave the old one; safe_files.py)."""
        payload = json.dumps({"version": STATE_VERSION, **asdict(record)}, indent=1)
        with self._writing():
            ensure_private_dir(self.directory)
            write_atomically(self._path(account), payload, durable=durable)

    def update(
        self, account: str, *, durable: bool = True, **changes: Unpack[RecordChanges]
    ) -> AccountRecord:
        """Apply ``changes`` to the stored record and return the result (see ``modify``)."""
        return self.modify(account, lambda record: replace(record, **changes), durable=durable)

    def modify(
        self,
        account: str,
        change: Callable[[AccountRecord], AccountRecord],
        *,
        durable: bool = True,
    ) -> AccountRecord:
        """Replace the stored record with ``change(record)`` and return the result.

        The read-modify-write holds a lock on the file, so that the daemon recording its plan
        cannot undo an in-flight marker or a rejection that a CLI refresh wrote meanwhile, and
        a change computed from the record (a failure counted) counts every writer's. Nothing is
        written when nothing changes: the daemon records its plan for every account at each
        plan, and at a thousand accounts those writes (each synced) were most of READY.
        ``durable=False`` is for what may be lost to a power cut (the old record then stays,
        whole): the daemon's planned times, planned again at its next start.

        Raises:
            StateUnwritable: the directory cannot be written (full disk, quota).
            UnsafeLocation: the directory or the file is not safely ours.
        """
        with self._writing(), flocked(self._layout.state_lock(account)):
            current = self.load(account)
            record = change(current)
            if record != current or not self._path(account).exists():
                self.save(account, record, durable=durable)
            return record

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """Translate a failed write (full disk, quota, file size limit) into StateUnwritable."""
        try:
            yield
        except OSError as exc:
            raise StateUnwritable(
                f"cannot write the state directory {self.directory} "
                f"({exc.strerror or type(exc).__name__}); free space or fix its permissions"
            ) from None

    def stamp(self, account: str) -> int | None:
        """Return the file's modification time in ns, or None; it changes with every write."""
        try:
            return self._path(account).stat().st_mtime_ns
        except OSError:
            return None

    def delete(self, account: str) -> None:
        """Forget everything about ``account``."""
        with contextlib.suppress(FileNotFoundError):
            self._path(account).unlink()
