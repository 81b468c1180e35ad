"""keyring's Secret Service items, read and written with a few D-Bus calls instead of keyring.

python-keyring and secretstorage cost about 100 ms before the first D-Bus message: keyring's
plugin discovery, the ``cryptography`` import, and a 1024-bit Diffie-Hellman exchange computed
in pure Python (two ``pow`` calls, 16 ms here), again for every call. Scripts call `token` all
the time and a daemon may hold a thousand accounts, so this module reads, writes and deletes the
very items keyring's backend does (the default collection, keyring's label and attributes, the
first match) with jeepney, the D-Bus library secretstorage is built on, over a session the Secret
Service encrypts.

One connection and one encrypted session serve the whole process (``_Link``): for a refresh, its
two token reads, the client secret, the write and its read-back; for the daemon, its lifetime.
A failure on that connection (the bus or the Secret Service restarted) closes it, and the call
is tried once more on a new connection with a new encrypted session, never a ``plain`` one.

Writes go in place: an existing item gets ``Item.SetSecret``, and ``CreateItem`` runs only when
there is none. ``CreateItem`` with ``replace`` on an existing item opens an access prompt on
KeePassXC 2.7.4 for every new client (its issue 9255), and every command is a new client: each
refresh would wait for a dialog nobody answers. KeePassXC answers every ``CreateItem`` and
``Delete`` with a prompt, which completes by itself when nothing needs asking; those prompts
are run here, within the deadline.

Locked means locked: the collection's and the item's ``Locked`` are read before a secret is
trusted. KWallet 5 finds the items of a closed wallet and answers ``GetSecret`` with an empty
secret instead of an ``IsLocked`` error; read as a document, that empty string once looked like
a corrupt item.

Which session, and what ``plain`` exposes to whom: over ``plain`` every secret crosses the
session bus in clear, so a ``dbus-monitor`` (or ``busctl monitor``) of the same user or root
sees each read *whole*: the item is the token document, refresh token included, and the
client secret item holds the client secret. Another local user cannot monitor the bus. So
reads and writes use the Diffie-Hellman session (``dh-ietf1024-sha256-aes128-cbc-pkcs7``):
the daemon, every full command, every write. Only the quick `token` path (quick_token.py)
reads over ``plain``: it prints the access token a moment later anyway, and there the
exchange's cost (measured by ``make bench``) would be most of its run time.

The direct calls handle the usual case: a session bus, a default collection, no
``KEYRING_PROPERTY_*`` overrides. A locked collection or item is asked to unlock, each Secret
Service in its own way, through the prompt ``Unlock`` returns; it raises ``Locked`` when it
stays locked. Where nobody can answer a prompt (not ``interactive``), one that does not complete
by itself soon is dismissed. Anything else (no bus, no Secret Service, a
missing collection, a dismissed prompt, any D-Bus error) raises ``Unsure`` and is handed to
keyring's backend, which prompts, raises and is translated exactly as before. Running out of
the deadline raises ``NoAnswer`` and is *not* handed over: keyring's backend has no deadline.
"""

from __future__ import annotations

import _thread  # threading's lock without its import, which the quick `token` would pay
import contextlib
import os
import time
from typing import TYPE_CHECKING, Any, TypeVar

# Defined with the session bus, so that the quick `token` catches it without this import.
from tvmaniac_refreshd.storage.session_bus import Unsure

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from tvmaniac_refreshd.storage.backend import SecretBackend

BUS_NAME = "org.freedesktop.secrets"
SERVICE_PATH = "/org/freedesktop/secrets"
SERVICE_INTERFACE = "org.freedesktop.Secret.Service"
COLLECTION_INTERFACE = "org.freedesktop.Secret.Collection"
ITEM_INTERFACE = "org.freedesktop.Secret.Item"
PROMPT_INTERFACE = "org.freedesktop.Secret.Prompt"
PROPERTIES_INTERFACE = "org.freedesktop.DBus.Properties"
# keyring's label and attributes for its default scheme (keyring.backends.SecretService).
KEYRING_APPLICATION = "Python keyring library"
T = TypeVar("T")
# Where nobody can answer a prompt, how long one may take to complete by itself (KWallet's unlock
# of a wallet PAM already opened, KeePassXC's CreateItem) before it is taken to need a person.
UNATTENDED_PROMPT_SECONDS = 2.0


class NoAnswer(Unsure):
    """The Secret Service did not answer by the deadline.

    Not handed to keyring: its backend has no deadline and would wait with a thread and two
    descriptors for as long as the service is stuck. The caller reports it instead.
    """


class Locked(Unsure):
    """The collection or the item is locked and stays so: its owner must unlock it.

    Not handed to keyring: its backend would only ask again, after a slow import.
    """


class Unanswered(Unsure):
    """The Secret Service showed a prompt that only a person can answer, and nobody can here.

    Not handed to keyring, which would show the same prompt and wait for it without a deadline.
    """


class SecretServiceKeyring:
    """Reads like ``keyring.backends.SecretService.Keyring``, faster; writes through it.

    ``timeout`` bounds each get, set or delete (all its D-Bus calls together); ``encrypted``
    moves secrets over a Diffie-Hellman session instead of ``plain`` (see the module docstring);
    ``interactive``: someone may answer a prompt (a desktop session), so one may take until
    the deadline; otherwise a prompt that does not complete by itself within
    ``UNATTENDED_PROMPT_SECONDS`` is dismissed (``Locked`` or ``Unanswered``).
    """

    # What `config check` and the insecure-backend check see: the items are keyring's.
    describes = "keyring.backends.SecretService.Keyring"

    def __init__(
        self,
        environ: Mapping[str, str] = os.environ,
        *,
        timeout: float | None = None,
        encrypted: bool = True,
        interactive: bool = False,
    ) -> None:
        self._keyring: SecretBackend | None = None
        self._environ = environ
        self._timeout = timeout
        self._encrypted = encrypted
        self._interactive = interactive

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
                interactive=self._interactive,
            )
        except (NoAnswer, Locked, Unanswered):
            raise
        except Unsure:
            return self._full().get_password(service, username)

    def get_passwords(self, service: str, usernames: Iterable[str]) -> dict[str, str | None]:
        """Return what ``get_password`` would for each of ``usernames``, read with one
        ``GetSecrets``; any it cannot vouch for (or all, where the direct read cannot be used)
        are left out, for the caller to read one by one."""
        try:
            return read_items(
                service,
                usernames,
                timeout=self._timeout,
                environ=self._environ,
                interactive=self._interactive,
            )
        except (NoAnswer, Locked, Unanswered):
            raise
        except Unsure:
            return {}

    def set_password(self, service: str, username: str, password: str) -> None:
        try:
            write_item(
                service,
                username,
                password,
                timeout=self._timeout,
                environ=self._environ,
                interactive=self._interactive,
            )
        except (NoAnswer, Locked, Unanswered):
            raise
        except Unsure:
            self._full().set_password(service, username, password)

    def delete_password(self, service: str, username: str) -> None:
        try:
            delete_item(
                service,
                username,
                timeout=self._timeout,
                environ=self._environ,
                interactive=self._interactive,
            )
        except (NoAnswer, Locked, Unanswered):
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
    interactive: bool = False,
) -> str | None:
    """Return the secret keyring's SecretService backend would return, or raise ``Unsure``.

    ``timeout`` bounds all the D-Bus calls together; running out of it raises ``NoAnswer``.
    ``environ`` names the session bus (and any ``KEYRING_PROPERTY_*`` override). A locked
    collection or item raises ``Locked`` (after its unlock prompt, if ``interactive``).
    """
    return _direct(
        lambda call: _read(call, service, username, encrypted, interactive), timeout, environ
    )


def read_items(
    service: str,
    usernames: Iterable[str],
    *,
    timeout: float | None = None,
    environ: Mapping[str, str] = os.environ,
    interactive: bool = False,
) -> dict[str, str | None]:
    """Return ``read_item``'s answer for many users at once: one search each, one ``GetSecrets``.

    Always over the encrypted session. A user whose item the answer leaves out or gives an
    empty secret (a locked item, on KWallet) is left out: ``read_item`` reads it with its checks.
    """
    names = list(usernames)
    return _direct(lambda call: _read_many(call, service, names, interactive), timeout, environ)


def write_item(
    service: str,
    username: str,
    secret: str,
    *,
    timeout: float | None = None,
    environ: Mapping[str, str] = os.environ,
    interactive: bool = False,
) -> None:
    """Store ``secret`` as keyring's backend would (its label and attributes), or raise ``Unsure``.

    An existing item is updated in place (``SetSecret``); a new one is created only when there
    is none. Always over an encrypted session.
    """
    _direct(lambda call: _write(call, service, username, secret, interactive), timeout, environ)


def delete_item(
    service: str,
    username: str,
    *,
    timeout: float | None = None,
    environ: Mapping[str, str] = os.environ,
    interactive: bool = False,
) -> None:
    """Delete the first item keyring's backend would find, or raise ``Unsure``."""
    _direct(lambda call: _delete(call, service, username, interactive), timeout, environ)


def _direct(work: Callable[[_Caller], T], timeout: float | None, environ: Mapping[str, str]) -> T:
    """Run ``work`` over the process's connection; anything unusual raises ``Unsure``.

    A failure on a connection kept from an earlier call (the bus or the Secret Service
    restarted, the session closed) is retried once on a new connection and a new encrypted
    session; a failure on a new one is handed to keyring. ``work`` must be safe to run twice:
    reads are, and a write finds the item the first run may have created.
    """
    address = environ.get("DBUS_SESSION_BUS_ADDRESS")
    if not address or any(key.startswith("KEYRING_PROPERTY_") for key in environ):
        raise Unsure
    deadline = None if timeout is None else time.monotonic() + timeout
    # One call at a time on the connection; a caller that cannot have it in time is told so.
    if not _link.lock.acquire(timeout=-1 if timeout is None else timeout):
        raise NoAnswer
    try:
        while True:
            fresh = True  # until the connection is known to be a kept one
            try:
                fresh = _link.connect(address)
                return work(_Caller(_link, deadline))
            except (Unanswered, NoAnswer):
                # A prompt or reply may still come on this connection: start the next call
                # on a clean one.
                _link.close()
                raise
            except Unsure:
                raise
            except TimeoutError:
                _link.close()
                raise NoAnswer from None
            except Exception:
                _link.close()
                if fresh:  # keyring reports it (or a missing jeepney), in its own words
                    raise Unsure from None
    finally:
        _link.lock.release()


class _Link:
    """The process's one connection to the session bus and its one encrypted session.

    Opening both costs a connection, an authentication and a Diffie-Hellman exchange: once per
    process (for the daemon, once for its lifetime) instead of once per call. Kept across
    calls; closed and opened again after any failure, a deadline run out, or a fork.
    """

    def __init__(self) -> None:
        self.lock = _thread.allocate_lock()
        self.connection: Any = None
        self.session: _EncryptedSession | None = None
        self._address: str | None = None
        self._pid = 0

    def connect(self, address: str) -> bool:
        """Make sure a connection to ``address`` is open; return whether it is a new one."""
        if self._pid != os.getpid():  # a forked child must not share its parent's socket
            self.connection, self.session = None, None
        if self.connection is not None and self._address == address:
            return False
        self.close()
        from jeepney.io.blocking import open_dbus_connection  # noqa: PLC0415

        self.connection = open_dbus_connection(bus=address)
        self._address, self._pid = address, os.getpid()
        return True

    def close(self) -> None:
        connection, self.connection, self.session = self.connection, None, None
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.close()


_link = _Link()


class _Caller:
    """Method calls on the Secret Service over one connection; an error reply raises."""

    def __init__(self, link: _Link, deadline: float | None) -> None:
        self._link = link
        self._connection = link.connection
        self._deadline = deadline

    def session(self) -> _EncryptedSession:
        """Return the connection's encrypted session, opening it on first use."""
        if self._link.session is None:
            self._link.session = _EncryptedSession.open(self)
        return self._link.session

    def _remaining(self) -> float | None:
        if self._deadline is None:
            return None
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        return remaining

    def __call__(self, path: str, interface: str, method: str, signature: str, *body: Any) -> Any:  # noqa: ANN401
        from jeepney import DBusAddress, new_method_call  # noqa: PLC0415
        from jeepney.wrappers import unwrap_msg  # noqa: PLC0415

        address = DBusAddress(path, bus_name=BUS_NAME, interface=interface)
        message = new_method_call(address, method, signature, body)
        reply = self._connection.send_and_get_reply(message, timeout=self._remaining())
        return unwrap_msg(reply)

    def prompt(self, path: str, *, interactive: bool) -> bool:
        """Run the prompt at ``path``; return whether it completed (False: it was dismissed).

        Until it completes nothing is done. ``interactive``: a person may answer it, up to the
        deadline (then ``NoAnswer``); otherwise it is dismissed after
        ``UNATTENDED_PROMPT_SECONDS`` and ``Unanswered`` is raised.
        """
        from jeepney import MatchRule, message_bus  # noqa: PLC0415
        from jeepney.wrappers import unwrap_msg  # noqa: PLC0415

        rule = MatchRule(type="signal", interface=PROMPT_INTERFACE, member="Completed", path=path)
        connection = self._connection
        with connection.filter(rule) as completions:
            match = message_bus.AddMatch(rule)
            unwrap_msg(connection.send_and_get_reply(match, timeout=self._remaining()))
            self(path, PROMPT_INTERFACE, "Prompt", "s", "")
            wait = self._remaining()
            if not interactive:
                wait = min(wait or UNATTENDED_PROMPT_SECONDS, UNATTENDED_PROMPT_SECONDS)
            try:
                signal = connection.recv_until_filtered(completions, timeout=wait)
            except TimeoutError:
                if interactive:
                    raise
                with contextlib.suppress(Exception):  # no dialog left behind, if it can
                    self(path, PROMPT_INTERFACE, "Dismiss", "")
                raise Unanswered from None
            finally:
                # The connection outlives the prompt: stop receiving its signals.
                with contextlib.suppress(Exception):
                    connection.send_and_get_reply(
                        message_bus.RemoveMatch(rule), timeout=self._remaining()
                    )
        dismissed, _ = signal.body
        return not dismissed


def _locked(call: _Caller, path: str, interface: str) -> bool:
    ((_, locked),) = call(path, PROPERTIES_INTERFACE, "Get", "ss", interface, "Locked")
    return bool(locked)


def _ensure_unlocked(call: _Caller, path: str, interface: str, interactive: bool) -> None:
    """Raise ``Locked`` unless ``path`` is unlocked or its unlock prompt unlocks it.

    Each Secret Service unlocks in its own way, all through ``Unlock`` and the prompt it
    returns: gnome-keyring asks for the login password; KeePassXC shows its database unlock
    dialog; KWallet opens the wallet, which completes by itself when PAM opened it at login
    (its collection stays locked for each new kwalletd until some client unlocks it), and
    otherwise asks for the wallet password.
    """
    if not _locked(call, path, interface):
        return
    _, prompt = call(SERVICE_PATH, SERVICE_INTERFACE, "Unlock", "ao", [path])
    try:
        if prompt != "/" and not call.prompt(prompt, interactive=interactive):
            raise Locked  # dismissed
    except Unanswered:
        raise Locked from None  # an unlock dialog nobody can answer here
    if _locked(call, path, interface):
        raise Locked


def _default_collection(call: _Caller, interactive: bool) -> str:
    (collection,) = call(SERVICE_PATH, SERVICE_INTERFACE, "ReadAlias", "s", "default")
    if collection == "/":
        raise Unsure  # no default collection: keyring creates one (with a prompt) or reports it
    # A locked collection may hide its items, or (KWallet) show them with empty secrets.
    _ensure_unlocked(call, collection, COLLECTION_INTERFACE, interactive)
    return str(collection)


def _find(call: _Caller, service: str, username: str, interactive: bool) -> tuple[str, str | None]:
    """Return the default collection and keyring's first match in it (unlocked), if any."""
    collection = _default_collection(call, interactive)
    # keyring's query for its default scheme; keyring uses the first match.
    (items,) = call(
        collection,
        COLLECTION_INTERFACE,
        "SearchItems",
        "a{ss}",
        {"username": username, "service": service},
    )
    if not items:
        return collection, None
    item = str(items[0])
    _ensure_unlocked(call, item, ITEM_INTERFACE, interactive)
    return collection, item


def _plain_session(call: _Caller) -> str:
    _, session = call(SERVICE_PATH, SERVICE_INTERFACE, "OpenSession", "sv", "plain", ("s", ""))
    return str(session)


def _read(
    call: _Caller, service: str, username: str, encrypted: bool, interactive: bool
) -> str | None:
    _, item = _find(call, service, username, interactive)
    if item is None:
        return None
    session = call.session() if encrypted else None
    path = session.path if session else _plain_session(call)
    ((_, parameters, value, _),) = call(item, ITEM_INTERFACE, "GetSecret", "o", path)
    plain = session.decrypt(bytes(parameters), bytes(value)) if session else bytes(value)
    if not plain and _locked(call, item, ITEM_INTERFACE):
        raise Locked  # locked in between: KWallet answers with an empty secret, not an error
    return plain.decode("utf-8")


def _read_many(
    call: _Caller, service: str, usernames: list[str], interactive: bool
) -> dict[str, str | None]:
    collection = _default_collection(call, interactive)
    found: dict[str, str | None] = {}
    paths: dict[str, str] = {}
    for username in usernames:
        (items,) = call(
            collection,
            COLLECTION_INTERFACE,
            "SearchItems",
            "a{ss}",
            {"username": username, "service": service},
        )
        if items:
            paths[username] = str(items[0])  # keyring's first match, as in _find
        else:
            found[username] = None
    if not paths:
        return found
    session = call.session()
    (secrets,) = call(
        SERVICE_PATH, SERVICE_INTERFACE, "GetSecrets", "aoo", list(paths.values()), session.path
    )
    for username, path in paths.items():
        if path in secrets:
            _, parameters, value, _ = secrets[path]
            plain = session.decrypt(bytes(parameters), bytes(value))
            if plain:
                found[username] = plain.decode("utf-8")
    return found


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


def _write(call: _Caller, service: str, username: str, secret: str, interactive: bool) -> None:
    collection, item = _find(call, service, username, interactive)
    session = call.session()
    iv, ciphertext = session.encrypt(secret.encode("utf-8"))
    value = (session.path, iv, ciphertext, "text/plain")
    if item is not None:
        call(item, ITEM_INTERFACE, "SetSecret", "(oayays)", value)
        return
    properties = {
        "org.freedesktop.Secret.Item.Label": ("s", f"Password for '{username}' on '{service}'"),
        "org.freedesktop.Secret.Item.Attributes": (
            "a{ss}",
            {"username": username, "service": service, "application": KEYRING_APPLICATION},
        ),
    }
    # No item matched in an unlocked collection, so replace has nothing to replace.
    _, prompt = call(
        collection, COLLECTION_INTERFACE, "CreateItem", "a{sv}(oayays)b", properties, value, False
    )
    if prompt != "/" and not call.prompt(prompt, interactive=interactive):
        raise Unsure  # dismissed: nothing was stored; keyring's backend asks again or reports it


def _delete(call: _Caller, service: str, username: str, interactive: bool) -> None:
    _, item = _find(call, service, username, interactive)
    if item is None:
        raise Unsure  # keyring raises its own "no such password"
    (prompt,) = call(item, ITEM_INTERFACE, "Delete", "")
    if prompt != "/" and not call.prompt(prompt, interactive=interactive):
        raise Unsure
