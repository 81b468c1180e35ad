"""Keep one account's tokens fresh: lock, re-read, spend the refresh token once, store first.

This is the only place that spends a refresh token. The sequence under the account lock is:
re-read the keyring (another process may have refreshed), prove the store can write now, mark
the refresh as in flight, POST, store the new pair, and only then record the outcome and hand
the token out.

The write probe writes the current document back in place: the very call the new pair will
take a moment later, so a locked store, a read-only one, or one that prompts on writes (KeePassXC
2.7.4 on ``CreateItem`` with replace) fails here, before anything is spent. It costs one write and
its read-back per refresh (docs/guide/secret-services.md). What remains is the irreducible
window: from the provider's answer to the end of the store's write call, the new pair exists only
in this process; a kill then loses it, and the in-flight marker names that afterwards. A store
that fails in that window no longer loses it: it is retried, then kept in memory with the
account's lock held (unsaved.py) and stored by the next run of the account.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path

from tvmaniac_refreshd.config.binding import mismatch, recorded, way_out
from tvmaniac_refreshd.config.settings import Account
from tvmaniac_refreshd.core.errors import (
    NotLoggedIn,
    RefreshdError,
    SessionRejected,
    StoreUnavailable,
    TokenInUse,
    TransientError,
)
from tvmaniac_refreshd.core.logs import get_logger, register_secret, shown
from tvmaniac_refreshd.core.policy import needs_refresh, refresh_due_at
from tvmaniac_refreshd.core.tokens import TokenDocument, TokenSet, with_tokens
from tvmaniac_refreshd.daemon.unsaved import Unsaved, UnsavedPairs
from tvmaniac_refreshd.providers.base import Provider
from tvmaniac_refreshd.storage.locks import (
    account_lock,
    token_in_use,
    token_spendable,
    wait_until_unused,
)
from tvmaniac_refreshd.storage.state import (
    RecordChanges,
    RefreshResult,
    StateFiles,
    token_digest,
)
from tvmaniac_refreshd.storage.store import TokenStore

# Storing the new pair is the one step that must not fail after the old token was spent.
# A crashed gnome-keyring is restarted by D-Bus activation within a second or two, so the
# waits between attempts grow to cover that (about 15 s in all) instead of failing at once.
SAVE_WAITS = (0.2, 0.5, 1.0, 2.0, 4.0, 8.0)


class Freshness(StrEnum):
    """Why the tokens ``ensure_fresh`` returns are fresh."""

    NOT_DUE = "not_due"  # they were not due: nothing was sent
    REFRESHED = "refreshed"  # this call spent the refresh token
    BY_OTHER = "by_other"  # another process refreshed while we waited for the lock


@dataclass(frozen=True)
class Fresh:
    """The outcome of ``Refresher.ensure_fresh``."""

    document: TokenDocument
    how: Freshness

    @property
    def refreshed(self) -> bool:
        return self.how is Freshness.REFRESHED

    @property
    def by_other(self) -> bool:
        return self.how is Freshness.BY_OTHER


class Refresher:
    """Refreshes one account, safely across every process on the machine."""

    def __init__(
        self,
        account: Account,
        *,
        store: TokenStore,
        states: StateFiles,
        lock_dir: Path,
        lock_timeout: float,
        client: Callable[[], Provider],
        clock: Callable[[], float],
        sleep: Callable[[float], None] = time.sleep,
        unsaved: UnsavedPairs | None = None,
    ) -> None:
        """``unsaved``: where new pairs the store could not keep wait (shared per process)."""
        self.account = account
        self._unsaved = unsaved if unsaved is not None else UnsavedPairs()
        self._sleep = sleep
        self._store = store
        self._states = states
        self._lock_dir = lock_dir
        self._lock_timeout = lock_timeout
        self._client = client
        self._clock = clock
        self._log = get_logger(account=account.name)

    def load(self) -> TokenDocument:
        """Return the stored tokens, checked against the current config.

        Raises:
            SessionRejected: no tokens, tokens bound to another client or host, or tokens the
                provider already rejected.
            StoreUnavailable, StoreCorrupt: the keyring cannot be used or read.
        """
        kept = self._store_unsaved()
        return kept if kept is not None else self._load()

    def _load(self) -> TokenDocument:
        document = self._store.load(self.account.name)
        if document is None:
            raise NotLoggedIn(
                f"account {self.account.name!r} is not logged in; run `tvmaniac-refreshd login`",
                account=self.account.name,
            )
        self.check(document)
        return document

    def check(self, document: TokenDocument) -> None:
        """Raise SessionRejected if ``document`` must not be used with the current config."""
        register_secret(document.tokens.access_token)
        register_secret(document.tokens.refresh_token)
        elsewhere = mismatch(self.account, document)
        if elsewhere is not None:
            raise SessionRejected(
                f"{elsewhere}; nothing was sent. To use this config, {way_out(self.account)}",
                account=self.account.name,
            )
        record = self._states.load(self.account.name)
        if record.needs_reauth(document.tokens.refresh_token):
            reason = record.reauth_reason or "the provider rejected the session"
            raise SessionRejected(
                f"account {self.account.name!r} needs a new login ({reason}); "
                "run `tvmaniac-refreshd login`",
                account=self.account.name,
            )

    def ensure_fresh(
        self, *, min_valid: int | None = None, force: bool = False, job_wait: float = 0.0
    ) -> Fresh:
        """Return tokens that are not due, refreshing them first if needed (or if ``force``).

        ``job_wait``: how long a refresh waits for the jobs running with the access token
        (storage/locks.py's in-use lock); 0 tries once.

        Raises:
            SessionRejected: the account needs `login` (nothing is sent if that is known).
            TokenInUse: a job still runs with the access token; nothing was sent.
            TransientError: try again later; the stored tokens are unchanged.
            ClientRejected, StoreUnavailable, StoreCorrupt, RefreshdError.
        """
        spending = False
        try:
            kept = self._store_unsaved()
            if kept is not None:
                return Fresh(kept, Freshness.REFRESHED)
            document = self._load()
            if not force and not self._due(document, min_valid):
                return self._kept(Fresh(document, Freshness.NOT_DUE))
            with contextlib.ExitStack() as held:
                held.enter_context(
                    account_lock(self._lock_dir, self.account.name, timeout=self._lock_timeout)
                )
                current = self._load()
                if current.tokens.refresh_token != document.tokens.refresh_token:
                    # Another process refreshed while we waited: its pair is as fresh as a pair
                    # can be, and refreshing again would only spend a token for nothing.
                    return self._kept(Fresh(current, Freshness.BY_OTHER))
                if not force and not self._due(current, min_valid):
                    return self._kept(Fresh(current, Freshness.NOT_DUE))
                # Held until the new pair is stored (kept with the lock if it cannot be).
                held.enter_context(
                    token_spendable(self._lock_dir, self.account.name, wait=job_wait)
                )
                spending = True  # from here on, _refresh_locked logs the outcome itself
                return Fresh(self._refresh_locked(current, held), Freshness.REFRESHED)
        except RefreshdError as exc:
            if not spending:
                self._log_unsent(exc)
            raise

    def _kept(self, fresh: Fresh) -> Fresh:
        """Log a call that sent nothing, with the fields of a refresh (REFRESH_RESULT=)."""
        self._log.info(
            "refresh.finished",
            outcome=fresh.how.value,
            expires_at=fresh.document.tokens.expires_at,
        )
        return fresh

    def _log_unsent(self, exc: RefreshdError) -> None:
        """Log why nothing was sent: every call gets one entry with REFRESH_RESULT=."""
        if isinstance(exc, NotLoggedIn):
            self._log.info("refresh.finished", outcome="logged_out")
        elif isinstance(exc, TokenInUse):  # deferred, not failed
            self._log.info("refresh.finished", outcome="waiting_for_job")
        elif isinstance(exc, SessionRejected):
            self._log.warning("refresh.finished", outcome="reauth_required", error=str(exc))
        elif isinstance(exc, StoreUnavailable):
            self._log.warning("refresh.finished", outcome="store_unavailable", error=str(exc))
        elif isinstance(exc, TransientError):
            self._log.warning("refresh.finished", outcome=RefreshResult.TRANSIENT, error=str(exc))
        else:
            self._log.error("refresh.finished", outcome=RefreshResult.FAILED, error=str(exc))

    def due(self, document: TokenDocument, min_valid: int | None = None) -> bool:
        """Whether ``document``'s tokens are due for a refresh now (or within ``min_valid``)."""
        return self._due(document, min_valid)

    def using(self) -> contextlib.AbstractContextManager[None]:
        """Hold the in-use lock shared while a job runs with the access token (locks.py).

        Raises:
            TransientError: a refresh held it for longer than the lock timeout.
            StateUnwritable, UnsafeLocation: the lock file cannot be used.
        """
        return token_in_use(self._lock_dir, self.account.name, wait=self._lock_timeout)

    def wait_unused(self) -> None:
        """Block until no job runs with the access token (a watcher thread's call).

        Raises:
            StateUnwritable, UnsafeLocation: the lock file cannot be used.
        """
        wait_until_unused(self._lock_dir, self.account.name)

    def _due(self, document: TokenDocument, min_valid: int | None) -> bool:
        return needs_refresh(
            document.tokens,
            self.account.refresh,
            now=self._clock(),
            salt=self.account.name,
            min_valid=min_valid,
        )

    def _refresh_locked(self, document: TokenDocument, held: contextlib.ExitStack) -> TokenDocument:
        name = self.account.name
        spent = token_digest(document.tokens.refresh_token)
        previous = self._states.load(name)
        interrupted = previous.in_flight_token == spent
        # The write probe (see the module docstring): raises StoreUnavailable, nothing spent.
        self._store.save(document)
        started = self._clock()
        self._states.update(name, in_flight_token=spent, in_flight_since=int(started))
        try:
            tokens = self._client().refresh(document.tokens.refresh_token, now=started)
        except SessionRejected as exc:
            reason = (
                "a previous refresh was interrupted (crash or lost response) after the provider "
                "may already have used the refresh token"
                if interrupted
                else "the provider rejected the refresh token"
            )
            # The provider's own words already say the session was rejected; only an
            # interrupted refresh has something to add (why the token may have been spent).
            detail = f"{reason}: {exc}" if interrupted else str(exc)
            self._record_failure(RefreshResult.REJECTED, detail, reauth=(spent, reason))
            raise SessionRejected(
                f"account {name!r} needs a new login: {reason}; run `tvmaniac-refreshd login`",
                account=name,
            ) from None
        except TransientError as exc:
            # The request may have reached the server: keep the in-flight marker.
            self._record_failure(RefreshResult.TRANSIENT, str(exc), keep_in_flight=True)
            raise
        except RefreshdError as exc:
            self._record_failure(RefreshResult.FAILED, str(exc))
            raise
        register_secret(tokens.access_token)
        register_secret(tokens.refresh_token)
        fresh = recorded(self.account, with_tokens(document, tokens, now=self._clock()))
        self._save_new_pair(fresh, started, held)
        self._record_success(tokens, started)
        return fresh

    def _record_success(self, tokens: TokenSet, started: float) -> None:
        name = self.account.name
        finished = self._clock()
        self._states.update(
            name,
            last_attempt_at=int(started),
            last_success_at=int(finished),
            last_result=RefreshResult.REFRESHED,
            last_error=None,
            consecutive_failures=0,
            in_flight_token=None,
            in_flight_since=None,
            reauth_token=None,
            reauth_reason=None,
        )
        self._log.info(
            "refresh.finished",
            outcome="refreshed",
            expires_at=tokens.expires_at,
            next_due_at=refresh_due_at(tokens, self.account.refresh, salt=name),
            duration_ms=round((finished - started) * 1000),
        )

    def _save_new_pair(
        self, fresh: TokenDocument, started: float, held: contextlib.ExitStack
    ) -> None:
        name = self.account.name
        waits = (*SAVE_WAITS, None)
        for attempt, wait in enumerate(waits, start=1):
            try:
                self._store.save(fresh)
            except StoreUnavailable as exc:
                self._log.error("refresh.store_failed", attempt=attempt, error=str(exc))
                if wait is None:
                    # Kept, never dropped: the lock stays held with it (unsaved.py).
                    self._unsaved.keep(Unsaved(fresh, started), held.pop_all())
                    message = (
                        f"the provider issued new tokens for {name!r} but "
                        f"{self._store.where(name)} could not store them ({exc}); this process "
                        "keeps them and stores them at its next try (the daemon retries by "
                        "itself); if it ends first they are lost: then run "
                        "`tvmaniac-refreshd login` once the store works again"
                    )
                    self._record_failure(RefreshResult.FAILED, message, keep_in_flight=True)
                    raise StoreUnavailable(message, account=name) from None
                self._sleep(wait)
            else:
                return

    def _store_unsaved(self) -> TokenDocument | None:
        """Store the pair an earlier refresh could not, if any; return it once stored.

        Raises:
            StoreUnavailable: the store still fails; the pair stays kept, the lock held.
        """
        name = self.account.name
        unsaved = self._unsaved.get(name)
        if unsaved is None:
            return None
        try:
            self._store.save(unsaved.document)
        except StoreUnavailable as exc:
            self._log.error("refresh.store_failed", attempt="kept", error=str(exc))
            raise StoreUnavailable(
                f"the new tokens of {name!r} are still not stored ({exc}); this process keeps "
                "them and tries again",
                account=name,
            ) from None
        self._unsaved.stored(name)
        self._log.info("refresh.kept_pair_stored")
        self._record_success(unsaved.document.tokens, unsaved.started)
        return unsaved.document

    def _record_failure(
        self,
        result: RefreshResult,
        message: str,
        *,
        reauth: tuple[str, str] | None = None,
        keep_in_flight: bool = False,
    ) -> None:
        name = self.account.name
        # Redacted before it is stored: the server may have echoed a token or the client
        # secret, and `status` shows the file's text to whoever asks.
        message = shown(message)
        changes: RecordChanges = {
            "last_attempt_at": int(self._clock()),
            "last_result": result,
            "last_error": message,
        }
        if not keep_in_flight:
            changes["in_flight_token"] = changes["in_flight_since"] = None
        if reauth is not None:
            changes["reauth_token"], changes["reauth_reason"] = reauth
        # Counted under the state file's lock: two failing processes count two failures.
        self._states.modify(
            name,
            lambda previous: replace(
                replace(previous, **changes),
                consecutive_failures=previous.consecutive_failures + 1,
            ),
        )
        level = "error" if reauth is not None else "warning"
        getattr(self._log, level)("refresh.finished", outcome=result, error=message)
