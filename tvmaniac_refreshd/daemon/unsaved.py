"""New token pairs the store could not keep yet, each held with its account's lock.

Once the provider has answered a refresh, the old refresh token is spent and the new pair exists
only in this process. If the store then fails for longer than the refresher's retries, the pair is
kept here instead of being dropped, and the account's lock stays held, so that no other process
spends the old, already spent, refresh token meanwhile. The next run of the account (the daemon's
retry, or any load) stores it first. Only the process's end loses it, with the lock.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass

from tvmaniac_refreshd.core.tokens import TokenDocument


@dataclass(frozen=True)
class Unsaved:
    """A pair waiting to be stored, and what its refresh began at (for the state file)."""

    document: TokenDocument
    started: float


class UnsavedPairs:
    """The pairs one process holds, by account; safe to share between threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[str, tuple[Unsaved, contextlib.ExitStack]] = {}

    def keep(self, unsaved: Unsaved, lock: contextlib.ExitStack) -> None:
        """Hold ``unsaved`` with ``lock`` (the account's lock, still held) until it is stored."""
        with self._lock:
            self._held[unsaved.document.account] = (unsaved, lock)

    def get(self, account: str) -> Unsaved | None:
        with self._lock:
            held = self._held.get(account)
        return None if held is None else held[0]

    def stored(self, account: str) -> None:
        """Forget the pair of ``account``, now stored, and release its lock."""
        with self._lock:
            held = self._held.pop(account, None)
        if held is not None:
            held[1].close()
