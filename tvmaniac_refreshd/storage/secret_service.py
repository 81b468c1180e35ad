"""keyring's Secret Service items, read and written with a few D-Bus calls instead of keyring.

python-keyring and secretstorage cost about 100 ms before the first D-Bus message: keyring's
plugin discovery, the ``cryptography`` import, and a 1024-bit Diffie-Hellman exchange computed
in pure Python (two ``pow`` calls, 16 ms here), again for every call. Scripts call `token` all
the time and a daemon may hold a thousand accounts, so this module reads, writes and deletes the
very items keyring's backend does (the default collection, keyring's label and attributes, the
first match, replace on write) with jeepney, the D-Bus library secretstorage is built on, over a
session the Secret Service encrypts.

Which session, and what ``plain`` exposes to whom: over ``plain`` every secret crosses the
session bus in clear, so a ``dbus-monitor`` (or ``busctl monitor``) of the same user or root
sees each read *whole*: the item is the token document, refresh token included, and the
client secret item holds the client secret. Another local user cannot monitor the bus. So
reads and writes use the Diffie-Hellman session (``dh-ietf1024-sha256-aes128-cbc-pkcs7``):
the daemon, every full command, every write. Only the quick `token` path (quick_token.py)
reads over ``plain``: it prints the access token a moment later anyway, and there the
exchange's cost (measured by ``make bench``) would be most of its run time.

The direct calls handle the simple case only: a session bus, an unlocked default collection, no
prompt, no ``KEYRING_PROPERTY_*`` overrides. Anything else (no bus, no Secret Service, a locked
or missing collection, a prompt, any D-Bus error) raises ``Unsure`` and is handed to keyring's
own backend, which prompts, raises and is translated exactly as before. Running out of the
deadline raises ``NoAnswer`` and is *not* handed over: keyring's backend has no deadline.
"""

from __future__ import annotations

import os
import time
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


class NoAnswer(Unsure):
    """The Secret Service did not answer by the deadline.

    Not handed to keyring: its backend has no deadline and would wait with a thread and two
    descriptors for as long as the service is stuck. The caller reports it instead.
    """


class SecretServiceKeyring:
    """Reads like ``keyring.backends.SecretService.Keyring``, faster; writes through it.

    ``timeout`` bounds each get, set or delete (all its D-Bus calls together); ``encrypted``
    moves secrets over a Diffie-Hellman session instead of ``plain`` (see the module docstring).
    """

    # What `config check` and the insecure-backend check see: the items are keyring's.
    describes = "keyring.backends.SecretService.Keyring"

    def __init__(
        self,
        environ: Mapping[str, str] = os.environ,
        *,
        timeout: float | None = None,
        encrypted: bool = True,
    ) -> None:
        self._keyring: SecretBackend | None = None
        self._environ = environ
        self._timeout = timeout
        self._encrypted = encrypted

    def _full(self) -> SecretBackend:
        if self._keyring is None:
            from keyring.backends import SecretService  # noqa: PLC0415  # the slow import

            self._keyring = SecretService.Keyring()  # type: ignore[no-untyped-call]
        return self._keyring

    def get_password(self, service: str, username: str) -> str | None:
        try:
            return read_item(
                service,
                username,
                timeout=self._timeout,
                environ=self._environ,
                encrypted=self._encrypted,
            )
        except NoAnswer:
            raise
        except Unsure:
            return self._full().get_password(service, username)

    def set_password(self, service: str, username: str, password: str) -> None:
        try:
            write_item(service, username, password, timeout=self._timeout, environ=self._environ)
        except NoAnswer:
            raise
        except Unsure:
            self._full().set_password(service, username, password)

    def delete_password(self, service: str, username: str) -> None:
        try:
            delete_item(service, username, timeout=self._timeout, environ=self._environ)
        except NoAnswer:
            raise
        except Unsure:
            self._full().delete_password(service, username)


def read_item(
    service: str,
    username: str,
    *,
    timeout: float | None = None,
    environ: Mapping[str, str] = os.environ,
    encrypted: bool = False,
) -> str | None:
    """Return the secret keyring's SecretService backend would return, or raise ``Unsure``.

    ``timeout`` bounds all the D-Bus calls together; running out of it raises ``NoAnswer``.
    ``environ`` names the session bus (and any ``KEYRING_PROPERTY_*`` override).
    """
    return _direct(lambda call: _first_match(call, service, username, encrypted), timeout, environ)


def write_item(
    service: str,
    username: str,
    secret: str,
    *,
    timeout: float | None = None,
    environ: Mapping[str, str] = os.environ,
) -> None:
    """Store ``secret`` as keyring's backend would (its label and attributes), or raise ``Unsure``.

    The item replaces the one with the same attributes, in a single CreateItem call, always
    over an encrypted session.
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
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        from jeepney.io.blocking import open_dbus_connection  # noqa: PLC0415

        with open_dbus_connection(bus=address) as connection:
            return work(_Caller(connection, deadline))
    except Unsure:
        raise
    except TimeoutError:
        raise NoAnswer from None
    except Exception:  # keyring reports it (or a missing jeepney), in its own words
        raise Unsure from None


class _Caller:
    """Method calls on the Secret Service over one connection; an error reply raises."""

    def __init__(self, connection: Any, deadline: float | None) -> None:  # noqa: ANN401
        self._connection = connection
        self._deadline = deadline

    def __call__(self, path: str, interface: str, method: str, signature: str, *body: Any) -> Any:  # noqa: ANN401
        from jeepney import DBusAddress, new_method_call  # noqa: PLC0415
        from jeepney.wrappers import unwrap_msg  # noqa: PLC0415

        timeout = None
        if self._deadline is not None:
            timeout = self._deadline - time.monotonic()
            if timeout <= 0:
                raise TimeoutError
        address = DBusAddress(path, bus_name=BUS_NAME, interface=interface)
        message = new_method_call(address, method, signature, body)
        return unwrap_msg(self._connection.send_and_get_reply(message, timeout=timeout))


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


def _first_match(call: _Caller, service: str, username: str, encrypted: bool) -> str | None:
    items = _search(call, _default_collection(call), service, username)
    if not items:
        return None
    session = _EncryptedSession.open(call) if encrypted else None
    path = session.path if session else _plain_session(call)
    # A locked item answers GetSecret with an IsLocked error, which is Unsure like any other.
    ((_, parameters, value, _),) = call(items[0], ITEM_INTERFACE, "GetSecret", "o", path)
    plain = session.decrypt(bytes(parameters), bytes(value)) if session else bytes(value)
    return plain.decode("utf-8")


class _EncryptedSession:
    """A ``dh-ietf1024-sha256-aes128-cbc-pkcs7`` session: what crosses the bus is ciphertext.

    The exchange is secretstorage's (its ``dhcrypto``, the code keyring's backend runs); the
    AES-CBC with PKCS#7 padding is ``cryptography``'s.
    """

    ALGORITHM = "dh-ietf1024-sha256-aes128-cbc-pkcs7"

    def __init__(self, path: str, key: bytes) -> None:
        self.path = path
        self._key = key

    @classmethod
    def open(cls, call: _Caller) -> _EncryptedSession:
        from secretstorage.dhcrypto import Session  # noqa: PLC0415

        exchange = Session()
        output, path = call(
            SERVICE_PATH,
            SERVICE_INTERFACE,
            "OpenSession",
            "sv",
            cls.ALGORITHM,
            ("ay", exchange.my_public_key.to_bytes(128, "big")),
        )
        signature, server_key = output
        if signature != "ay":
            raise Unsure
        exchange.set_server_public_key(int.from_bytes(bytes(server_key), "big"))
        assert exchange.aes_key is not None  # noqa: S101  # set_server_public_key sets it
        return cls(str(path), exchange.aes_key)

    def encrypt(self, plain: bytes) -> tuple[bytes, bytes]:
        """Return (initialization vector, ciphertext) of ``plain``."""
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes  # noqa: PLC0415
        from cryptography.hazmat.primitives.padding import PKCS7  # noqa: PLC0415

        padder = PKCS7(128).padder()
        padded = padder.update(plain) + padder.finalize()
        iv = os.urandom(16)
        encryptor = Cipher(algorithms.AES(self._key), modes.CBC(iv)).encryptor()
        return iv, encryptor.update(padded) + encryptor.finalize()

    def decrypt(self, iv: bytes, ciphertext: bytes) -> bytes:
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes  # noqa: PLC0415
        from cryptography.hazmat.primitives.padding import PKCS7  # noqa: PLC0415

        decryptor = Cipher(algorithms.AES(self._key), modes.CBC(iv)).decryptor()
        padded = decryptor.update(ciphertext) + decryptor.finalize()
        unpadder = PKCS7(128).unpadder()
        return unpadder.update(padded) + unpadder.finalize()


def _create(call: _Caller, service: str, username: str, secret: str) -> None:
    collection = _default_collection(call)
    properties = {
        "org.freedesktop.Secret.Item.Label": ("s", f"Password for '{username}' on '{service}'"),
        "org.freedesktop.Secret.Item.Attributes": (
            "a{ss}",
            {"username": username, "service": service, "application": KEYRING_APPLICATION},
        ),
    }
    session = _EncryptedSession.open(call)
    iv, ciphertext = session.encrypt(secret.encode("utf-8"))
    value = (session.path, iv, ciphertext, "text/plain")
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
