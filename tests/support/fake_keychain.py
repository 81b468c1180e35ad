"""The macOS Keychain for tests on Linux: keyring's real macOS backend, fake Security.framework.

``keyring/backends/macOS/api.py`` is loaded from the installed keyring, as it is, with its
ctypes libraries replaced at import by a fake Security framework: every function it binds
(``SecItemCopyMatching``, ``SecItemAdd``, ``SecItemDelete``, and ``SecItemUpdate`` for code that
binds it from ``api._sec`` as pgcli does) takes ``restype``/``argtypes`` like a ctypes function
and is answered by a ``FakeKeychain``; the CF helpers around them pass plain dicts. So what runs
is keyring's own code: ``set_generic_password`` deletes and then adds, ``Error.raise_for_status``
maps the statuses, and ``keyring.backends.macOS.Keyring`` turns them into keyring's exceptions.

The fake keychain answers with real OSStatus codes: -25300 (errSecItemNotFound) for a missing
item, -25299 (errSecDuplicateItem) for an add over an existing one, and ``fail_with`` (-25308,
-128, -25293, ...) for every call while set. ``kill_after`` makes it stop dead after that many
SecItem calls, as a killed process would: the call that would come next never happens, and
every later call raises ``Killed``.

The access list, as the legacy (file-based) login keychain keeps it: an item created by
``SecItemAdd`` trusts only the program that created it (``binary``, the caller's code
identity). Any other program that reads, updates or deletes it is prompted (``prompts``); its
answer (``answer``) is Always Allow (it joins the list), Deny (-128) or no prompt possible
(-25308: ssh, or an agent outside the GUI session). ``SecItemUpdate`` keeps the item and its
list; deleting and re-adding it makes a new list that names only the re-adder, and every grant
that dropped is recorded in ``lost_grants``.
"""

from __future__ import annotations

import ctypes
import importlib.util
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import keyring.backends

ERR_ITEM_NOT_FOUND = -25300
ERR_INTERACTION_NOT_ALLOWED = -25308
ERR_USER_CANCELED = -128
ERR_AUTH_FAILED = -25293


class Killed(Exception):  # the process "died" here
    """The process was killed: no further Keychain call happens."""


ERR_DUPLICATE_ITEM = -25299
# The caller's code identity, as the access list records it (see the module docstring).
CLI = (
    "/opt/homebrew/Cellar/python@3.12/3.12.4/Frameworks/Python.framework/Versions/3.12/"
    "Resources/Python.app"
)
ALWAYS_ALLOW, DENY, NO_UI = "always allow", "deny", "no ui"


class _Function:
    """A function of the fake Security framework: ctypes' settable ``restype``/``argtypes``,
    and a call answered by the keychain its library is bound to."""

    def __init__(self, library: _Library, name: str) -> None:
        self.library = library
        self.name = name
        self.restype: Any = None
        self.argtypes: Any = None

    def __call__(self, *args: Any) -> Any:
        handler = self.library.handlers.get(self.name)
        if handler is None:
            raise AssertionError(f"the fake Security framework does not implement {self.name}")
        return handler(*args)


class _Library:
    """A ctypes library whose every symbol is a ``_Function`` (api.py sets restype/argtypes)."""

    def __init__(self) -> None:
        self.handlers: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        function = _Function(self, name)
        setattr(self, name, function)
        return function


class FakeKeychain:
    """Generic-password items keyed by (service, account), their access lists, and the SecItem
    calls on them."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, str], str] = {}
        self.trusted: dict[tuple[str, str], set[str]] = {}
        self.binary = CLI  # who is calling now
        self.answer = ALWAYS_ALLOW  # what that program's user answers to a prompt
        self.prompts: list[tuple[str, tuple[str, str]]] = []
        self.lost_grants: list[tuple[str, tuple[str, str]]] = []
        self._dropped: dict[tuple[str, str], set[str]] = {}  # the lists of deleted items
        self.fail_with: int | None = None
        self.kill_after: int | None = None
        self.calls: list[str] = []
        self._returned: dict[int, str] = {}

    def _enter(self, name: str) -> int | None:
        if self.kill_after is not None and len(self.calls) >= self.kill_after:
            raise Killed(name)
        self.calls.append(name)
        return self.fail_with

    def _access(self, key: tuple[str, str]) -> int:
        """Whether the caller may use the item: trusted, or the user allows it when asked."""
        if self.binary in self.trusted[key]:
            return 0
        self.prompts.append((self.binary, key))
        if self.answer == ALWAYS_ALLOW:
            self.trusted[key].add(self.binary)
            return 0
        return ERR_USER_CANCELED if self.answer == DENY else ERR_INTERACTION_NOT_ALLOWED

    # The Security functions, with the queries as plain dicts.
    def copy_matching(self, query: dict[str, Any], data: Any) -> int:
        status = self._enter("SecItemCopyMatching")
        if status is not None:
            return status
        key = (query["kSecAttrService"], query["kSecAttrAccount"])
        if key not in self.items:
            return ERR_ITEM_NOT_FOUND
        if status := self._access(key):
            return status
        data.value = id(self.items[key])
        self._returned[data.value] = self.items[key]
        return 0

    def add(self, query: dict[str, Any], _result: Any) -> int:
        status = self._enter("SecItemAdd")
        if status is not None:
            return status
        key = (query["kSecAttrService"], query["kSecAttrAccount"])
        if key in self.items:
            return ERR_DUPLICATE_ITEM
        self.items[key] = query["kSecValueData"]
        self.trusted[key] = {self.binary}  # SecItemAdd's default access: its creator only
        for binary in sorted(self._dropped.pop(key, set()) - {self.binary}):
            self.lost_grants.append((binary, key))
        return 0

    def update(self, query: dict[str, Any], attributes: dict[str, Any]) -> int:
        status = self._enter("SecItemUpdate")
        if status is not None:
            return status
        assert set(attributes) == {"kSecValueData"}, attributes
        key = (query["kSecAttrService"], query["kSecAttrAccount"])
        if key not in self.items:
            return ERR_ITEM_NOT_FOUND
        if status := self._access(key):
            return status
        self.items[key] = attributes["kSecValueData"]
        return 0

    def delete(self, query: dict[str, Any]) -> int:
        status = self._enter("SecItemDelete")
        if status is not None:
            return status
        key = (query["kSecAttrService"], query["kSecAttrAccount"])
        if key not in self.items:
            return ERR_ITEM_NOT_FOUND
        if status := self._access(key):
            return status
        del self.items[key]
        self._dropped[key] = self.trusted.pop(key)
        return 0

    def data(self, handle: Any) -> str:
        return self._returned.pop(handle.value)


def bind(api: Any, keychain: FakeKeychain) -> None:
    """Answer the fake ``api`` module's Security calls from ``keychain``."""
    api._sec.handlers.update(
        SecItemCopyMatching=keychain.copy_matching,
        SecItemAdd=keychain.add,
        SecItemDelete=keychain.delete,
        SecItemUpdate=keychain.update,
    )
    api.cfstr_to_str = keychain.data


def load_api(keychain: FakeKeychain) -> types.ModuleType:
    """Return keyring's own macOS ``api`` module, bound to ``keychain`` instead of Security."""
    package = Path(keyring.backends.__file__).parent / "macOS"
    spec = importlib.util.spec_from_file_location("keyring.backends.macOS.api", package / "api.py")
    assert spec is not None and spec.loader is not None  # noqa: PT018
    api = importlib.util.module_from_spec(spec)
    real_cdll = ctypes.CDLL
    security = _Library()  # one library object stands for Security and CoreFoundation
    ctypes.CDLL = lambda *_, **__: security  # type: ignore[assignment,misc]
    try:
        spec.loader.exec_module(api)
    finally:
        ctypes.CDLL = real_cdll  # type: ignore[misc]
    api.k_ = lambda name: name  # type: ignore[attr-defined]
    api.create_query = lambda **kwargs: kwargs  # type: ignore[attr-defined]
    api.byref = lambda value: value  # type: ignore[attr-defined]
    bind(api, keychain)
    return api


@contextmanager
def macos_keyring(keychain: FakeKeychain) -> Iterator[Any]:
    """Yield keyring's real ``macOS.Keyring`` class, its ``api`` the fake, in ``sys.modules``."""
    api = load_api(keychain)
    saved = {name: sys.modules.get(name) for name in ("keyring.backends.macOS.api",)}
    sys.modules["keyring.backends.macOS.api"] = api
    macos: Any = importlib.import_module("keyring.backends.macOS")
    had_api = "api" in vars(macos)
    previous = vars(macos).get("api")
    macos.api = api  # what `from . import api` would have bound
    try:
        yield macos.Keyring
    finally:
        if had_api:
            macos.api = previous
        else:
            del macos.api
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
