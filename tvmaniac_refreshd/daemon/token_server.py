"""The daemon's side of `token` answered over its socket (storage/token_socket.py).

One thread of its own accepts and answers one client at a time, each bounded by the protocol's
timeout, so a slow or hostile client holds up other clients at most that long (they fall back
to the keyring) and never the scheduler. Started only where the caller decides the store may be
read for any process of this user (runtime/token_answers.py); ``allowed`` says at each request
whether that still holds.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Collection, Mapping

from tvmaniac_refreshd.core.errors import StoreCorrupt, StoreUnavailable
from tvmaniac_refreshd.core.logs import get_logger
from tvmaniac_refreshd.storage.token_socket import ANSWERED, Listener, serve_connection

# Refusals, as the protocol sends them.
NOT_CONFIGURED = "not an account of this daemon"
OTHER_BUS = "another session bus"
NOT_ALLOWED = "the store asks per client"
NO_TOKENS = "no tokens"
STORE_FAILED = "the store failed"


class TokenServer:
    """Answers `token` for the accounts of this daemon's config, from its store."""

    def __init__(
        self,
        listener: Listener,
        *,
        accounts: Callable[[], Collection[str]],
        bus: str,
        allowed: Callable[[], bool],
        read: Callable[[str], Mapping[str, object] | None],
    ) -> None:
        """``read(account)`` returns the stored document's public part (None: none stored) or
        raises the store's error; ``allowed()`` says whether the store may still be read for
        another process of ours; ``bus`` is the daemon's session bus address."""
        self._listener = listener
        self._accounts = accounts
        self._bus = bus
        self._allowed = allowed
        self._read = read
        self._thread = threading.Thread(target=self._serve, name="token socket", daemon=True)
        self._log = get_logger()

    def start(self) -> None:
        # The daemon waits for its signals with sigwait in the main thread: this thread must
        # not take them, so it starts with them all blocked.
        every = set(signal.Signals)
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, every)
        try:
            self._thread.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        self._log.info("token_socket.listening", path=self._listener.path)

    def close(self, timeout: float = 2.0) -> None:
        self._listener.close()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _serve(self) -> None:
        while True:
            try:
                connection = self._listener.accept()
            except OSError:
                return  # closed
            try:
                outcome = serve_connection(connection, self.respond)
            except Exception as exc:  # a bug must not leave clients waiting on a dead thread
                self._log.exception("token_socket.unexpected_error", error=repr(exc))
                continue
            finally:
                connection.close()
            self._log.debug("token_socket.request", outcome=outcome)

    def respond(self, account: str, bus: str) -> Mapping[str, object] | str:
        """Return ``account``'s document for a client of ours, or why not (never a secret)."""
        if account not in self._accounts():
            return NOT_CONFIGURED
        if bus != self._bus:
            return OTHER_BUS  # another keyring, perhaps: the client asks its own
        if not self._allowed():
            return NOT_ALLOWED
        try:
            document = self._read(account)
        except (StoreUnavailable, StoreCorrupt):  # the client reads (and reports) itself
            self._log.debug("token_socket.store_failed", account=account)
            return STORE_FAILED
        if document is None:
            return NO_TOKENS
        self._log.debug("token_socket.answer", account=account, outcome=ANSWERED)
        return document
