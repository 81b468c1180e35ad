"""Writes that lose nothing on a store whose replace is not one atomic call.

keyring's own macOS backend (used only when chosen explicitly; the default on a Mac is
macos_keychain.py, which updates in place and is atomic) replaces an item by deleting it and
then adding the new one (two ``SecItem*`` calls). A kill, or a Keychain prompt left
unanswered, between the two leaves no item at all: the rotated pair the provider just issued
is gone and the old one is already spent.

``TwoPhaseWrites`` wraps such a backend. A write of item ``U``:

1. if ``U:pending`` exists (an earlier write was killed after its step 2), finish that write
   first: copy it into ``U`` and remove it, so step 2 below never deletes the only copy;
2. write the new value as ``U:pending`` (absent, so this is a bare add);
3. replace ``U`` (delete, add): while ``U`` is missing, ``U:pending`` holds the value;
4. remove ``U:pending``.

A read returns ``U:pending`` when it exists (it is never older than ``U``), else ``U``. The only
window in which a kill loses the new value is before step 2's add has returned, which every store
has: the value exists only in memory until its first write lands. Steps 1, 3 and 4 may be killed
at any point.

Readers do not take the refresh lock, so a read may interleave with a write: it reads ``U``, then
``U:pending``, and if both were missing reads ``U`` once more (the writer finished in between).
"""

from __future__ import annotations

from tvmaniac_refreshd.storage.backend import SecretBackend

PENDING_SUFFIX = ":pending"  # account names cannot contain ':'
# keyring backends whose replace is a single call to the store (CreateItem with replace=True,
# secret_password_store, writePassword, CredWrite). Anything else gets two-phase writes.
ATOMIC_BACKENDS = (
    "keyring.backends.SecretService.",
    "keyring.backends.libsecret.",
    "keyring.backends.kwallet.",
    "keyring.backends.Windows.",
)


def describe(backend: object) -> str:
    """Return the class path a backend stands for (a wrapper names the backend it wraps)."""
    describes = getattr(backend, "describes", None)
    if isinstance(describes, str):
        return describes
    kind = type(backend)
    return f"{kind.__module__}.{kind.__qualname__}"


def writes_atomically(backend: object) -> bool:
    """Return whether replacing an item of ``backend`` is one atomic operation.

    A backend may say so itself with an ``atomic_writes`` attribute; otherwise only the known
    atomic backends count, so an unknown one gets the safe, slower path.
    """
    declared = getattr(backend, "atomic_writes", None)
    if isinstance(declared, bool):
        return declared
    return describe(backend).startswith(ATOMIC_BACKENDS)


def safe_writes(backend: SecretBackend) -> SecretBackend:
    """Return ``backend`` itself if its writes are atomic, else it wrapped in two-phase writes."""
    return backend if writes_atomically(backend) else TwoPhaseWrites(backend)


class TwoPhaseWrites:
    """A ``SecretBackend`` whose writes survive a kill at any point (see the module docstring)."""

    atomic_writes = True

    def __init__(self, backend: SecretBackend) -> None:
        self._backend = backend
        self.describes = describe(backend)

    def get_password(self, service: str, username: str) -> str | None:
        current = self._backend.get_password(service, username)
        pending = self._backend.get_password(service, username + PENDING_SUFFIX)
        if pending is not None:
            return pending
        if current is not None:
            return current
        # Both missing: none stored, or a write completed between the two reads.
        return self._backend.get_password(service, username)

    def set_password(self, service: str, username: str, password: str) -> None:
        backend = self._backend
        pending_name = username + PENDING_SUFFIX
        leftover = backend.get_password(service, pending_name)
        if leftover is not None:
            backend.set_password(service, username, leftover)
            backend.delete_password(service, pending_name)
        backend.set_password(service, pending_name, password)
        backend.set_password(service, username, password)
        backend.delete_password(service, pending_name)

    def delete_password(self, service: str, username: str) -> None:
        backend = self._backend
        pending_name = username + PENDING_SUFFIX
        had_pending = backend.get_password(service, pending_name) is not None
        if had_pending:
            backend.delete_password(service, pending_name)
        if not had_pending or backend.get_password(service, username) is not None:
            # With nothing stored at all, this raises the backend's own "not found".
            backend.delete_password(service, username)
