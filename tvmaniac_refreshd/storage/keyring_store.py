"""The OS keyring, the only module that uses ``keyring``; and the per-account refresh lock.

Every keyring call runs in a worker thread with a deadline, because a locked collection can wait
forever for an unlock prompt nobody sees. Every failure of the keyring, its backends and D-Bus is
translated here into ``StoreUnavailable`` (exit 69) with a sentence on how to fix it.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable, Collection, Iterator, Mapping
from typing import TypeVar

from tvmaniac_refreshd.config.settings import StoreSettings
from tvmaniac_refreshd.core.errors import StoreCorrupt, StoreUnavailable
from tvmaniac_refreshd.core.locations import APP
from tvmaniac_refreshd.core.tokens import TokenDocument, decode_document, encode_document
from tvmaniac_refreshd.storage import unlock_advice
from tvmaniac_refreshd.storage.backend import SecretBackend
from tvmaniac_refreshd.storage.secret_service import Locked, NoAnswer, Unanswered
from tvmaniac_refreshd.storage.secret_service_owner import (
    GNOME_KEYRING,
    HEADLESS_UNLOCK,
    SecretServiceOwner,
    locked_advice,
    prompt_advice,
)
from tvmaniac_refreshd.storage.session_bus import may_choose_backend_explicitly
from tvmaniac_refreshd.storage.two_phase import describe, safe_writes
from tvmaniac_refreshd.storage.unlock_advice import Machine

# The keyring item's service name is the application's name (design.md); tests name it so.
SERVICE = APP

T = TypeVar("T")
# Backends that would write tokens to a plain file or nowhere; never chosen silently.
INSECURE_BACKENDS = ("keyring.backends.fail", "keyring.backends.null", "keyrings.alt")
CLIENT_SECRET_SUFFIX = ":client_secret"  # account names cannot contain ':'


# A wrapper (secret_service.py, two_phase.py) names the backend it stands for.
_describe = describe


def is_insecure(backend: object) -> bool:
    """Return whether ``backend`` keeps secrets in plain text or not at all."""
    return _describe(backend).startswith(INSECURE_BACKENDS) or "Plaintext" in _describe(backend)


def default_backend(
    environ: Mapping[str, str],
    platform: str = sys.platform,
    *,
    timeout: float | None = None,
    interactive: bool = False,
) -> SecretBackend:
    """Return the keyring backend to use: the user's explicit choice, else the platform's own.

    Choosing the platform backend directly skips keyring's discovery of every installed backend
    (slow, and it would silently fall back to a plaintext file when keyrings.alt is installed).
    On Linux, the Secret Service backend reads its items without importing keyring when it can
    (see secret_service.py); keyring itself is imported only for an explicit choice (its
    environment variable or its config file) or for what the direct read does not cover.
    ``timeout`` bounds each of its direct calls, so that a hung service frees the worker;
    ``interactive``: a person may answer the Secret Service's prompts (a desktop session).
    """
    if may_choose_backend_explicitly(environ, platform):
        import keyring.core  # noqa: PLC0415  # deferred: heavy, and not needed by every command

        explicit = keyring.core.load_env() if environ.get("PYTHON_KEYRING_BACKEND") else None
        explicit = explicit or keyring.core.load_config()
        if explicit is not None:
            return explicit
    if platform == "darwin":
        # keyring's own backend, but writing in place: its delete + add drops the access list.
        from tvmaniac_refreshd.storage.macos_keychain import Keychain  # noqa: PLC0415

        return Keychain()
    from tvmaniac_refreshd.storage.secret_service import SecretServiceKeyring  # noqa: PLC0415

    return SecretServiceKeyring(environ, timeout=timeout, interactive=interactive)


def _keychain_status(exc: BaseException) -> int | None:
    """Return the OSStatus of keyring's macOS backend behind ``exc``, if that is its source."""
    seen: BaseException | None = exc
    while seen is not None:
        if type(seen).__module__.startswith("keyring.backends.macOS") and seen.args:
            status = seen.args[0]
            if isinstance(status, int):
                return status
        seen = seen.__cause__ or seen.__context__
    return None


def _unavailable(exc: BaseException, *, locked: Callable[[], str]) -> StoreUnavailable:
    """Translate a keyring/secretstorage/D-Bus/Keychain exception into a fix-it message.

    ``locked``: the whole message for a locked Secret Service (asked only when it is locked).
    """
    name = type(exc).__name__
    text = str(exc)
    status = _keychain_status(exc)
    if status is not None:
        from tvmaniac_refreshd.storage.macos_keychain import keychain_advice  # noqa: PLC0415

        return StoreUnavailable(keychain_advice(status))
    if name == "KeyringLocked" or "locked" in text.lower():
        return StoreUnavailable(locked())
    if name == "InitError" or "Prompt dismissed" in text:
        return StoreUnavailable(
            "the keyring has no default collection and could not create one (the prompt was "
            "dismissed or no display is available). Create the 'login' keyring, then try again: "
            "on a desktop, in Passwords and Keys (seahorse), + > Password keyring, named login "
            "(then right-click > Set as default); from a shell (gnome-keyring), "
            f"{HEADLESS_UNLOCK}, which creates it with the password you type"
        )
    if name == "NoKeyringError" or "DBUS_SESSION_BUS_ADDRESS" in text or isinstance(exc, OSError):
        return StoreUnavailable(
            "no Secret Service is reachable: install one (e.g. `apt install gnome-keyring`, or "
            "KeePassXC with its Secret Service integration), and make sure your session bus is "
            "up and DBUS_SESSION_BUS_ADDRESS is set (under ssh or cron it often is not)"
        )
    return StoreUnavailable(f"the keyring failed ({name}); `tvmaniac-refreshd config check` helps")


def _removal_command(account: str) -> str:
    if sys.platform == "darwin":
        return f"`security delete-generic-password -s {APP} -a {account}`"
    return f"`secret-tool clear service {APP} username {account}`"


def _store_exceptions() -> tuple[type[BaseException], ...]:
    """Return the exception classes that mean "the secure store failed"."""
    classes: list[type[BaseException]] = [RuntimeError, OSError]
    with contextlib.suppress(ImportError):
        import keyring.errors  # noqa: PLC0415

        classes.append(keyring.errors.KeyringError)
    with contextlib.suppress(ImportError):
        import secretstorage.exceptions  # noqa: PLC0415

        classes.append(secretstorage.exceptions.SecretStorageException)
    with contextlib.suppress(ImportError):
        import jeepney.wrappers  # noqa: PLC0415

        classes.append(jeepney.wrappers.DBusErrorResponse)
    return tuple(classes)


# Workers given up on that may still be waiting for the Secret Service (there is one per
# session, whichever store or account asked it).
_stuck: list[threading.Thread] = []
_stuck_lock = threading.Lock()


def _still_waiting() -> str | None:
    """Return the name of a worker still waiting for the keyring, forgetting the finished ones."""
    with _stuck_lock:
        _stuck[:] = [worker for worker in _stuck if worker.is_alive()]
        return _stuck[0].name.removeprefix("keyring: ") if _stuck else None


class KeyringStore:
    """Token documents and client secrets in the OS keyring, one item per account."""

    kind = "keyring"

    def __init__(
        self,
        settings: StoreSettings,
        backend_factory: Callable[[], SecretBackend],
        *,
        headless: bool = False,
        owner: Callable[[], SecretServiceOwner | None] = lambda: None,
        machine: Machine | None = None,
    ) -> None:
        """``headless``: no desktop session to unlock the keyring in; advice says so.

        ``owner`` names the program behind the Secret Service (secret_service_owner.py), asked
        only when advice depends on it; ``machine`` says where gnome-keyring's recipe will be
        followed (whether systemd runs, whether a daemon does; unlock_advice.py).
        """
        self._settings = settings
        self._factory = backend_factory
        self._headless = headless
        self._owner = owner
        self._machine = machine or Machine(headless=headless)
        self._backend: SecretBackend | None = None
        self._ahead = threading.local()  # read_ahead's documents, for its own thread only

    def _resolve(self) -> SecretBackend:
        if self._backend is None:
            backend = self._factory()
            if is_insecure(backend) and not self._settings.allow_insecure_backend:
                secure = (
                    "Unset PYTHON_KEYRING_BACKEND (or keyring's config) to use the Keychain"
                    if sys.platform == "darwin"
                    else "Start a Secret Service (gnome-keyring, KeePassXC)"
                )
                raise StoreUnavailable(
                    f"the keyring backend {_describe(backend)} is not a secure store; refusing "
                    f"to use it. {secure}, or set [store] allow_insecure_backend = true if you "
                    "accept the risk"
                )
            # A store whose replace is delete + add (the Keychain) must not lose the only copy.
            self._backend = safe_writes(backend)
        return self._backend

    def backend_name(self) -> str:
        """Return the backend's class path, for `config check` and `status`.

        Raises:
            StoreUnavailable: if no acceptable backend can be set up.
        """
        return _describe(self._bounded(self._resolve, "opening the keyring"))

    def where(self, account: str) -> str:  # one keyring holds every account
        """Return where the item of ``account`` lives, for messages."""
        return "the keyring"

    def protection(self) -> str:
        """Return what protects the items: the keyring's own encryption and lock."""
        return "the OS keyring: encrypted with your login password, readable once unlocked"

    def _bounded(self, call: Callable[[], T], what: str) -> T:
        """Run ``call`` in a worker thread, giving up after the configured timeout.

        The direct Secret Service calls carry the same deadline, so a worker that was given up
        on ends soon after, closing its connection. Until it has, no new call is started: a
        service that stopped answering would otherwise collect a thread and its descriptors
        per call (keyring's own backend, which a locked collection falls back to, has no
        deadline at all).
        """
        waiting = _still_waiting()
        if waiting is not None:
            self._backend = None
            raise StoreUnavailable(
                f"the keyring has not yet answered an earlier call ({waiting}) while {what}; "
                "unlock it, or restart it if it hangs, and try again"
            )
        outcome: dict[str, object] = {}

        def work() -> None:
            try:
                outcome["value"] = call()
            except StoreUnavailable as exc:
                outcome["error"] = exc
            except NoAnswer:
                outcome["error"] = self._no_answer(what)
            except Locked:
                outcome["error"] = StoreUnavailable(self._locked_message(what))
            except Unanswered:
                outcome["error"] = StoreUnavailable(
                    f"{prompt_advice(self._owner())} ({what}); then run the command again"
                )
            except Exception as exc:
                # Known only now, so that a read that never imported keyring does not pay for
                # importing its exception classes; anything else is a bug, re-raised below.
                if isinstance(exc, _store_exceptions()):
                    outcome["error"] = _unavailable(exc, locked=self._locked_message)
                else:
                    outcome["bug"] = exc

        # A daemon thread: if the keyring hangs, the process can still exit.
        worker = threading.Thread(target=work, name=f"keyring: {what}", daemon=True)
        worker.start()
        worker.join(self._settings.timeout)
        if worker.is_alive():
            with _stuck_lock:
                _stuck.append(worker)
            # Forget the backend so that the next call starts over (the user may unlock meanwhile).
            self._backend = None
            raise self._no_answer(what)
        if "bug" in outcome:
            raise outcome["bug"]  # type: ignore[misc]
        if "error" in outcome:
            self._backend = None
            error = outcome["error"]
            assert isinstance(error, StoreUnavailable)  # noqa: S101
            raise error
        return outcome["value"]  # type: ignore[return-value]

    def _no_answer(self, what: str) -> StoreUnavailable:
        if sys.platform == "darwin":
            return StoreUnavailable(
                f"the keyring did not answer within {self._settings.timeout:.0f}s while {what} "
                "(a Keychain prompt waiting for an answer?); answer it with Always Allow and "
                "try again"
            )
        if not self._gnome_keyring():
            advice = self._locked_advice() if self._headless else "unlock it"
            return StoreUnavailable(
                f"the keyring did not answer within {self._settings.timeout:.0f}s while {what} "
                f"(a locked collection waiting for an unlock prompt?); {advice}, and try again"
            )
        return StoreUnavailable(
            unlock_advice.no_answer(self._machine, seconds=self._settings.timeout, what=what)
        )

    def _locked_advice(self) -> str:
        return locked_advice(self._owner(), headless=self._headless)

    def _gnome_keyring(self) -> bool:
        owner = self._owner()
        return owner is None or owner.program == GNOME_KEYRING

    def _locked_message(self, what: str | None = None) -> str:
        """The whole message for a locked Secret Service: gnome-keyring's is a short sentence
        and the recipe that fits this machine (unlock_advice.py); any other's is its own."""
        if self._gnome_keyring():
            owner = self._owner()
            return unlock_advice.locked(self._machine, who=None if owner is None else owner.name)
        during = f" while {what}" if what else ""
        return (
            f"the keyring is locked ({self._who()}){during}; {self._locked_advice()}; then run "
            "the command again"
        )

    def _who(self) -> str:
        owner = self._owner()
        return "the Secret Service" if owner is None else owner.name

    def _get(self, username: str, what: str) -> str | None:
        return self._bounded(lambda: self._resolve().get_password(APP, username), what)

    @contextlib.contextmanager
    def read_ahead(self, accounts: Collection[str]) -> Iterator[None]:
        """Within the block, serve this thread's first ``load`` of each of ``accounts`` from one
        bulk read made now: the daemon's plan of a thousand accounts, one ``GetSecrets``.

        Only this thread's: a refresh in another thread must read the item as it is when it
        holds the account's lock, never a copy from before. A save drops the account's copy.
        Where the backend cannot read in bulk, or the bulk read fails, each load reads as usual
        (and reports the failure itself).
        """
        bulk = getattr(self._resolve_quietly(), "get_passwords", None)
        ahead: dict[str, str | None] = {}
        if bulk is not None and accounts:
            with contextlib.suppress(StoreUnavailable):
                ahead = self._bounded(
                    lambda: bulk(APP, list(accounts)), f"reading {len(accounts)} accounts"
                )
        self._ahead.documents = ahead
        try:
            yield
        finally:
            self._ahead.documents = {}

    def _resolve_quietly(self) -> SecretBackend | None:
        try:
            return self._resolve()
        except StoreUnavailable:
            return None  # each load reports it

    def _read_ahead(self, account: str) -> tuple[bool, str | None]:
        documents: dict[str, str | None] = getattr(self._ahead, "documents", {})
        if account not in documents:
            return False, None
        return True, documents.pop(account)

    def load(self, account: str) -> TokenDocument | None:
        """Return the stored tokens of ``account``, or None if there are none.

        Raises:
            StoreUnavailable: the keyring cannot be used.
            StoreCorrupt: the item exists but is not a document of ours.
        """
        known, text = self._read_ahead(account)
        if not known:
            text = self._get(account, f"reading the tokens of {account!r}")
        if text == "":  # an empty item is never ours; KWallet's locked answer
            raise StoreUnavailable(
                f"the keyring gave an empty secret for {account!r} ({self._who()}): a locked "
                f"store answers so; {self._locked_advice()}; then run the command again"
            )
        return None if text is None else decode_document(text, account)

    def save(self, document: TokenDocument) -> None:
        """Store ``document`` as its account's item, replacing the previous one.

        Raises:
            StoreUnavailable: the keyring cannot be used; the previous item is unchanged.
            StoreCorrupt: what was written cannot be read back.
        """
        text = encode_document(document)
        self._read_ahead(document.account)  # a copy from before this write is stale

        def write_and_verify() -> bool:
            backend = self._resolve()
            backend.set_password(APP, document.account, text)
            # Another program's item with other attributes can shadow ours on lookup; a token
            # we cannot read back is as lost as one never written, so say so now.
            return backend.get_password(APP, document.account) == text

        if not self._bounded(write_and_verify, f"storing the tokens of {document.account!r}"):
            raise StoreCorrupt(
                f"the keyring returned a different item for {document.account!r} right after "
                "storing it: another item with the same service and user name shadows ours. "
                f"Remove it ({_removal_command(document.account)}) and run "
                "`tvmaniac-refreshd login`",
                account=document.account,
            )

    def rewrite(self, document: TokenDocument) -> None:
        """Write ``document`` over its item, unread (store.py says why).

        Raises:
            StoreUnavailable: the keyring cannot be written now; nothing else changed.
        """
        text = encode_document(document)
        self._read_ahead(document.account)
        self._bounded(
            lambda: self._resolve().set_password(APP, document.account, text),
            f"storing the tokens of {document.account!r}",
        )

    def delete(self, account: str) -> bool:
        """Delete the item of ``account``; return whether there was one.

        Raises:
            StoreUnavailable: the keyring cannot be used.
        """
        self._read_ahead(account)
        return self._delete(account, f"deleting the tokens of {account!r}")

    def _delete(self, username: str, what: str) -> bool:
        def work() -> bool:
            backend = self._resolve()
            if backend.get_password(APP, username) is None:
                return False
            backend.delete_password(APP, username)
            return True

        return self._bounded(work, what)

    def load_client_secret(self, account: str) -> str | None:
        """Return the client secret kept in the keyring for ``account``, if any."""
        return self._get(
            account + CLIENT_SECRET_SUFFIX, f"reading the client secret of {account!r}"
        )

    def save_client_secret(self, account: str, secret: str) -> None:
        """Keep ``secret`` as the client secret of ``account``."""
        self._bounded(
            lambda: self._resolve().set_password(APP, account + CLIENT_SECRET_SUFFIX, secret),
            f"storing the client secret of {account!r}",
        )

    def delete_client_secret(self, account: str) -> bool:
        """Delete the client secret of ``account``; return whether there was one."""
        return self._delete(
            account + CLIENT_SECRET_SUFFIX, f"deleting the client secret of {account!r}"
        )
