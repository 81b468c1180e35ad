"""Whether the daemon answers `token` over its socket (storage/token_socket.py), and its server.

The rule: the daemon answers only where every process of this user could read the item from the
store without being asked anyway, so that answering bypasses nothing:

- the Secret Service owned by gnome-keyring: it gives an unlocked collection's items to every
  client of the session (a locked one fails the daemon's read; the client then reads itself and
  is asked to unlock as before). Checked again at each request: the owner must still be the
  gnome-keyring process found at start, or another gnome-keyring found then.
- Off everywhere else: KeePassXC (it may confirm each client's access), KWallet, any other
  Secret Service, the macOS Keychain (it asks per application), a keyring backend chosen with
  ``PYTHON_KEYRING_BACKEND`` or keyringrc.cfg, and the file store (the quick path reads its
  file itself, which is as fast).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Mapping

from tvmaniac_refreshd.core.errors import UnsafeLocation
from tvmaniac_refreshd.core.logs import get_logger
from tvmaniac_refreshd.core.tokens import encode_document
from tvmaniac_refreshd.daemon.token_server import TokenServer
from tvmaniac_refreshd.runtime.root import Runtime
from tvmaniac_refreshd.storage.secret_service_owner import (
    GNOME_KEYRING,
    SecretServiceOwner,
    find_owner,
    program_of,
)
from tvmaniac_refreshd.storage.session_bus import may_choose_backend_explicitly
from tvmaniac_refreshd.storage.token_socket import Listener, public_document, supported


class _Gate:
    """Whether the Secret Service is still owned by gnome-keyring (module docstring)."""

    def __init__(self, environ: Mapping[str, str], owner: SecretServiceOwner) -> None:
        self._environ = environ
        self._pid = owner.pid

    def __call__(self) -> bool:
        if program_of(self._pid) == GNOME_KEYRING:
            return True  # /proc/PID/exe, microseconds; a new owner means a new process
        owner = find_owner(self._environ, with_version=False)
        if owner is None or owner.program != GNOME_KEYRING:
            return False
        self._pid = owner.pid
        return True


def why_off(runtime: Runtime, platform: str = sys.platform) -> str | SecretServiceOwner:
    """Return the gnome-keyring that makes answering safe, or why the daemon does not answer."""
    if not supported(platform):
        return "not on this system"
    if runtime.config.store.backend != "keyring":
        return "the file store: `token` reads it itself"
    if may_choose_backend_explicitly(runtime.environ, platform):
        return "a keyring backend may be chosen explicitly"
    owner = find_owner(runtime.environ, with_version=False)
    if owner is None:
        return "no Secret Service"
    if owner.program != GNOME_KEYRING:
        return f"{owner.name} may ask per client"
    return owner


@contextlib.contextmanager
def token_answers(runtime: Runtime) -> Iterator[None]:
    """Answer `token` over the socket within the block, where the rule allows it."""
    log = get_logger()
    server = None
    found = why_off(runtime)
    if isinstance(found, str):
        log.info("token_socket.off", reason=found)
    else:
        try:
            listener = Listener.bind(str(runtime.layout.state))
        except (OSError, UnsafeLocation) as exc:
            listener = f"the socket cannot be made: {exc}"
        if isinstance(listener, str):
            log.info("token_socket.off", reason=listener)
        else:
            server = TokenServer(
                listener,
                accounts=lambda: runtime.config.accounts,
                bus=runtime.environ.get("DBUS_SESSION_BUS_ADDRESS", ""),
                allowed=_Gate(runtime.environ, found),
                read=lambda account: _public(runtime, account),
            )
            server.start()
    try:
        yield
    finally:
        if server is not None:
            server.close()


def _public(runtime: Runtime, account: str) -> Mapping[str, object] | None:
    """Return the public part of ``account``'s stored document, or None if there is none.

    Raises:
        StoreUnavailable, StoreCorrupt: the store's own errors.
    """
    document = runtime.store.load(account)
    return None if document is None else public_document(encode_document(document))
