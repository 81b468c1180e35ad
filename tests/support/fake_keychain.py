"""The macOS Keychain for tests on Linux: keyring's real macOS backend, fake Security.framework.

``keyring/backends/macOS/api.py`` is loaded from the installed keyring, as it is, with only its
ctypes libraries stubbed at import; then its three ``SecItem*`` functions (and the CF helpers
around them) are replaced by a dictionary of generic-password items. So what runs is keyring's
own code: ``set_generic_password`` deletes and then adds, ``Error.raise_for_status`` maps the
statuses, and ``keyring.backends.macOS.Keyring`` turns them into keyring's exceptions.

The fake keychain answers with real OSStatus codes: -25300 (errSecItemNotFound) for a missing
item, and ``fail_with`` (-25308, -128, -25293, ...) for every call while set. ``kill_after``
makes it stop dead after that many SecItem calls, as a killed process would: the call that would
come next never happens, and every later call raises ``Killed``.
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


class _Library:
    """A ctypes library whose every symbol is a settable stub (api.py sets restype/argtypes)."""

    def __getattr__(self, name: str) -> Any:
        stub = types.SimpleNamespace(restype=None, argtypes=None)
        setattr(self, name, stub)
        return stub


class FakeKeychain:
    """Generic-password items keyed by (service, account), and the SecItem calls on them."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, str], str] = {}
        self.fail_with: int | None = None
        self.kill_after: int | None = None
        self.calls: list[str] = []
        self._returned: dict[int, str] = {}

    def _enter(self, name: str) -> int | None:
        if self.kill_after is not None and len(self.calls) >= self.kill_after:
            raise Killed(name)
        self.calls.append(name)
        return self.fail_with

    # The Security functions api.py calls, with the query as a plain dict.
    def copy_matching(self, query: dict[str, Any], data: Any) -> int:
        status = self._enter("SecItemCopyMatching")
        if status is not None:
            return status
        key = (query["kSecAttrService"], query["kSecAttrAccount"])
        if key not in self.items:
            return ERR_ITEM_NOT_FOUND
        data.value = id(self.items[key])
        self._returned[data.value] = self.items[key]
        return 0

    def add(self, query: dict[str, Any], _result: Any) -> int:
        status = self._enter("SecItemAdd")
        if status is not None:
            return status
        key = (query["kSecAttrService"], query["kSecAttrAccount"])
        if key in self.items:
            return -25299  # errSecDuplicateItem
        self.items[key] = query["kSecValueData"]
        return 0

    def delete(self, query: dict[str, Any]) -> int:
        status = self._enter("SecItemDelete")
        if status is not None:
            return status
        key = (query["kSecAttrService"], query["kSecAttrAccount"])
        if self.items.pop(key, None) is None:
            return ERR_ITEM_NOT_FOUND
        return 0

    def data(self, handle: Any) -> str:
        return self._returned.pop(handle.value)


def load_api(keychain: FakeKeychain) -> types.ModuleType:
    """Return keyring's own macOS ``api`` module, bound to ``keychain`` instead of Security."""
    package = Path(keyring.backends.__file__).parent / "macOS"
    spec = importlib.util.spec_from_file_location("keyring.backends.macOS.api", package / "api.py")
    assert spec is not None and spec.loader is not None  # noqa: PT018
    api = importlib.util.module_from_spec(spec)
    real_cdll = ctypes.CDLL
    ctypes.CDLL = lambda *_, **__: _Library()  # type: ignore[assignment,misc]
    try:
        spec.loader.exec_module(api)
    finally:
        ctypes.CDLL = real_cdll  # type: ignore[misc]
    api.k_ = lambda name: name  # type: ignore[attr-defined]
    api.create_query = lambda **kwargs: kwargs  # type: ignore[attr-defined]
    api.byref = lambda value: value  # type: ignore[attr-defined]
    api.SecItemCopyMatching = keychain.copy_matching  # type: ignore[attr-defined]
    api.SecItemAdd = keychain.add  # type: ignore[attr-defined]
    api.SecItemDelete = keychain.delete  # type: ignore[attr-defined]
    api.cfstr_to_str = keychain.data  # type: ignore[attr-defined]
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
