"""keyring's Secret Service backend, with a lighter read for the common case (the `token` path).

python-keyring costs about 100 ms of imports (its plugin discovery, jaraco) before its first D-Bus
message, more than everything else `token` does, and scripts call `token` all the time. So
``SecretServiceKeyring.get_password`` reads the very item keyring's backend reads through
secretstorage, the library keyring itself uses underneath: the same default collection, the
same attributes, the first match, and secretstorage's encrypted session, so the secret never
crosses the bus in clear and no cryptography is written here.

It handles the plain case only: a session bus, an unlocked default collection, an unlocked item,
no ``KEYRING_PROPERTY_*`` overrides. Anything else (no bus, a locked or missing collection, a
D-Bus error) is handed to keyring's own backend, which prompts, raises and is translated exactly
as before. Writes and deletes always go through keyring.
"""

from __future__ import annotations

import os
from contextlib import closing
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tvmaniac_refreshd.store import SecretBackend


class _Unsure(Exception):  # not an error: "let keyring decide"
    """The direct read met something keyring handles (a prompt, an error to translate)."""


class SecretServiceKeyring:
    """Reads like ``keyring.backends.SecretService.Keyring``, faster; writes through it."""

    # What `config check` and the insecure-backend check see: the items are keyring's.
    describes = "keyring.backends.SecretService.Keyring"

    def __init__(self) -> None:
        self._keyring: SecretBackend | None = None

    def _full(self) -> SecretBackend:
        if self._keyring is None:
            from keyring.backends import SecretService  # noqa: PLC0415  # the slow import

            self._keyring = SecretService.Keyring()  # type: ignore[no-untyped-call]
        return self._keyring

    def get_password(self, service: str, username: str) -> str | None:
        try:
            return read_item(service, username)
        except _Unsure:
            return self._full().get_password(service, username)

    def set_password(self, service: str, username: str, password: str) -> None:
        self._full().set_password(service, username, password)

    def delete_password(self, service: str, username: str) -> None:
        self._full().delete_password(service, username)


def read_item(service: str, username: str) -> str | None:
    """Return the secret keyring's SecretService backend would return, or raise ``_Unsure``."""
    if not os.environ.get("DBUS_SESSION_BUS_ADDRESS") or any(
        key.startswith("KEYRING_PROPERTY_") for key in os.environ
    ):
        raise _Unsure
    try:
        import secretstorage  # noqa: PLC0415

        with closing(secretstorage.dbus_init()) as connection:
            return _first_match(secretstorage, connection, service, username)
    except _Unsure:
        raise
    except Exception:  # keyring reports it (or a missing secretstorage), in its own words
        raise _Unsure from None


def _first_match(
    secretstorage: Any,  # noqa: ANN401  # untyped library
    connection: Any,  # noqa: ANN401
    service: str,
    username: str,
) -> str | None:
    collection = secretstorage.get_default_collection(connection)
    if collection.is_locked():
        raise _Unsure  # unlocking may prompt: keyring's job
    # keyring's query for its default scheme; keyring returns the first match.
    for item in collection.search_items({"username": username, "service": service}):
        if item.is_locked():
            raise _Unsure
        secret: bytes = item.get_secret()
        return secret.decode("utf-8")
    return None
