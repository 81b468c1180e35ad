"""keyring's Secret Service items, read and written with a few D-Bus calls instead of keyring.

python-keyring and secretstorage cost about 100 ms before the first D-Bus message: keyring's
plugin discovery, the ``cryptography`` import, and a 1024-bit Diffie-Hellman exchange computed
in pure Python (two ``pow`` calls, 16 ms here), again for every call. Scripts call `token` all
the time and a daemon may hold a thousand accounts, so this module reads, writes and deletes the
very items keyring's backend does (the default collection, keyring's label and attributes, the
first match, replace on write) with jeepney, the D-Bus library secretstorage is built on, over a
session with the Secret Service's ``plain`` algorithm.

Why ``plain`` is no loss: the transport encryption only protects the bytes while they pass
through the session bus's daemon. That bus is reachable only by the same user (and root), who
can ask the Secret Service for the same item without any prompt, and `token` writes the access
token in clear to a pipe a moment later anyway.

The direct calls handle the plain case only: a session bus, an unlocked default collection, no
prompt, no ``KEYRING_PROPERTY_*`` overrides. Anything else (no bus, no Secret Service, a locked
or missing collection, a prompt, any D-Bus error or timeout) raises ``Unsure`` and is handed to
keyring's own backend, which prompts, raises and is translated exactly as before.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from tvmaniac_refreshd.storage.backend import SecretBackend

BUS_NAME = "org.freedesktop.secrets"
SERVICE_PATH = "/org/freedesktop/secrets"
SERVICE_INTERFACE = "org.freedesktop.Secret.Service"
COLLECTION_INTERFACE = "org.freedesktop.Secret.Collection"
ITEM_INTERFACE = "org.freedesktop.Secret.Item"
PROPERTIES_INTERFACE = "org.freedesktop.DBus.Properties"
# keyring's label and attributes for its default scheme (keyring.backends.SecretService).
KEYRING_APPLICATION = "Python keyring library"
T = TypeVar("T")


class Unsure(Exception):  # not an error: "let keyring decide"
    """The direct read met something keyring handles (a prompt, an error to translate)."""


class SecretServiceKeyring:
    """Reads like ``keyring.backends.SecretService.Keyring``, faster; writes through it."""

    # What `config check` and the insecure-backend check see: the items are keyring's.
    describes = "keyring.backends.SecretService.Keyring"

    def __init__(self, environ: Mapping[str, str] = os.environ) -> None:
        self._keyring: SecretBackend | None = None
        self._environ = environ

    def _full(self) -> SecretBackend:
        if self._keyring is None:
            from keyring.backends import SecretService  # noqa: PLC0415  # the slow import

            self._keyring = SecretService.Keyring()  # type: ignore[no-untyped-call]
        return self._keyring

    def get_password(self, service: str, username: str) -> str | None:
        try:
            return read_item(service, username, environ=self._environ)
        except Unsure:
            return self._full().get_password(service, username)

    def set_password(self, service: str, username: str, password: str) -> None:
        try:
            write_item(service, username, password, environ=self._environ)
        except Unsure:
            self._full().set_password(service, username, password)

    def delete_password(self, service: str, username: str) -> None:
        try:
            delete_item(service, username, environ=self._environ)
        except Unsure:
            self._full().delete_password(service, username)


def read_item(
    service: str,
    username: str,
    *,
    timeout: float | None = None,
    environ: Mapping[str, str] = os.environ,
) -> str | None:
    """Return the secret keyring's SecretService backend would return, or raise ``Unsure``.

    ``timeout`` bounds each D-Bus call; running out of it is ``Unsure`` too. ``environ`` names
    the session bus (and any ``KEYRING_PROPERTY_*`` override).
    """
    return _direct(lambda call: _first_match(call, service, username), timeout, environ)


def write_item(
    service: str,
    username: str,
    secret: str,
    *,
    timeout: float | None = None,
    environ: Mapping[str, str] = os.environ,
) -> None:
    """Store ``secret`` as keyring's backend would (its label and attributes), or raise ``Unsure``.

    The item replaces the one with the same attributes, in a single CreateItem call.
    """
    _direct(lambda call: _create(call, service, username, secret), timeout, environ)


def delete_item(
    service: str,
    username: str,
    *,
    timeout: float | None = None,
    environ: Mapping[str, str] = os.environ,
) -> None:
    """Delete the first item keyring's backend would find, or raise ``Unsure``."""
    _direct(lambda call: _delete(call, service, username), timeout, environ)


def _direct(work: Callable[[_Caller], T], timeout: float | None, environ: Mapping[str, str]) -> T:
    """Run ``work`` over a fresh session-bus connection; anything unusual raises ``Unsure``."""
    address = environ.get("DBUS_SESSION_BUS_ADDRESS")
    if not address or any(key.startswith("KEYRING_PROPERTY_") for key in environ):
        raise Unsure
    try:
        from jeepney.io.blocking import open_dbus_connection  # noqa: PLC0415

        with open_dbus_connection(bus=address) as connection:
            return work(_Caller(connection, timeout))
    except Unsure:
        raise
    except Exception:  # keyring reports it (or a missing jeepney), in its own words
        raise Unsure from None


class _Caller:
    """Method calls on the Secret Service over one connection; an error reply raises."""

    def __init__(self, connection: Any, timeout: float | None) -> None:  # noqa: ANN401
        self._connection = connection
        self._timeout = timeout

    def __call__(self, path: str, interface: str, method: str, signature: str, *body: Any) -> Any:  # noqa: ANN401
        from jeepney import DBusAddress, new_method_call  # noqa: PLC0415
        from jeepney.wrappers import unwrap_msg  # noqa: PLC0415

        address = DBusAddress(path, bus_name=BUS_NAME, interface=interface)
        message = new_method_call(address, method, signature, body)
        return unwrap_msg(self._connection.send_and_get_reply(message, timeout=self._timeout))


def _default_collection(call: _Caller) -> str:
    (collection,) = call(SERVICE_PATH, SERVICE_INTERFACE, "ReadAlias", "s", "default")
    if collection == "/":
        raise Unsure  # no default collection: keyring creates one (with a prompt) or reports it
    return str(collection)


def _search(call: _Caller, collection: str, service: str, username: str) -> list[str]:
    # keyring's query for its default scheme; keyring uses the first match.
    (items,) = call(
        collection,
        COLLECTION_INTERFACE,
        "SearchItems",
        "a{ss}",
        {"username": username, "service": service},
    )
    if not items:
        # A locked collection may hide its items; only an unlocked one can say "none".
        ((_, locked),) = call(
            collection, PROPERTIES_INTERFACE, "Get", "ss", COLLECTION_INTERFACE, "Locked"
        )
        if locked:
            raise Unsure  # unlocking may prompt: keyring's job
    return list(items)


def _plain_session(call: _Caller) -> str:
    _, session = call(SERVICE_PATH, SERVICE_INTERFACE, "OpenSession", "sv", "plain", ("s", ""))
    return str(session)


def _first_match(call: _Caller, service: str, username: str) -> str | None:
    items = _search(call, _default_collection(call), service, username)
    if not items:
        return None
    # A locked item answers GetSecret with an IsLocked error, which is Unsure like any other.
    ((_, _, value, _),) = call(items[0], ITEM_INTERFACE, "GetSecret", "o", _plain_session(call))
    return bytes(value).decode("utf-8")


def _create(call: _Caller, service: str, username: str, secret: str) -> None:
    collection = _default_collection(call)
    properties = {
        "org.freedesktop.Secret.Item.Label": ("s", f"Password for '{username}' on '{service}'"),
        "org.freedesktop.Secret.Item.Attributes": (
            "a{ss}",
            {"username": username, "service": service, "application": KEYRING_APPLICATION},
        ),
    }
    value = (_plain_session(call), b"", secret.encode("utf-8"), "text/plain")
    _, prompt = call(
        collection, COLLECTION_INTERFACE, "CreateItem", "a{sv}(oayays)b", properties, value, True
    )
    if prompt != "/":
        raise Unsure  # nothing is stored until a prompt is answered: keyring's job


def _delete(call: _Caller, service: str, username: str) -> None:
    items = _search(call, _default_collection(call), service, username)
    if not items:
        raise Unsure  # keyring raises its own "no such password"
    (prompt,) = call(items[0], ITEM_INTERFACE, "Delete", "")
    if prompt != "/":
        raise Unsure
