"""The macOS Keychain, written in place so that an item's access list survives every write.

keyring's macOS backend replaces an item by deleting it and adding it again. An item made by
``SecItemAdd`` trusts only the program that made it, so each such write drops every "Always
Allow" the user gave any other program: the CLI of another install, the agent's interpreter
after an upgrade, ``git-credential`` from elsewhere. With two such programs, each refresh by
one revokes the other, and the prompt comes back at every refresh (in the agent it ends in the
keyring timeout).

Here a write is ``SecItemUpdate`` of ``kSecValueData`` alone, which keeps the item and its
access list; ``SecItemAdd`` only when there is no item yet (-25300). Either is one call, so a
write is atomic and needs no two-phase ``:pending`` item. Reads and deletes are keyring's own.
keyring's ctypes bindings (``keyring.backends.macOS.api``) are reused, as pgcli does; only
``SecItemUpdate``, which keyring does not bind, is bound here. keyring's exception types are
raised, so that keyring_store.py translates every Keychain failure in one place.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from collections.abc import Callable
from typing import Any

from tvmaniac_refreshd.core.locations import APP

ERR_ITEM_NOT_FOUND = -25300
ERR_DUPLICATE_ITEM = -25299
# proc_pidpath's buffer: PROC_PIDPATHINFO_MAXSIZE (4 * MAXPATHLEN) in <libproc.h>.
PIDPATH_MAX = 4 * 1024


class Keychain:
    """keyring's macOS backend, with writes that update the item in place."""

    # Replacing an item is one call (SecItemUpdate, or SecItemAdd of a new one): see two_phase.py.
    atomic_writes = True

    def __init__(self) -> None:
        from keyring.backends import macOS  # noqa: PLC0415  # only on a Mac, or under the fake

        try:
            from keyring.backends.macOS import api  # noqa: PLC0415
        except ImportError as exc:  # keyring could not load Security.framework (not a Mac?)
            raise RuntimeError(f"the macOS Security framework cannot be used: {exc}") from exc
        self._keyring: Any = macOS.Keyring()  # type: ignore[no-untyped-call]
        self._api: Any = api

    def get_password(self, service: str, username: str) -> str | None:
        result: str | None = self._keyring.get_password(service, username)
        return result

    def delete_password(self, service: str, username: str) -> None:
        self._keyring.delete_password(service, username)

    def set_password(self, service: str, username: str, password: str) -> None:
        """Update the item's data in place, or add the item if there is none.

        Raises:
            keyring.errors.KeyringLocked: access was denied (-128), as keyring raises it.
            keyring.errors.PasswordSetError: any other status, the OSStatus as its cause.
        """
        from keyring.errors import KeyringLocked, PasswordSetError  # noqa: PLC0415

        api = self._api
        try:
            status = self._update(service, username, password)
            if status == ERR_ITEM_NOT_FOUND:
                status = self._add(service, username, password)
                if status == ERR_DUPLICATE_ITEM:  # another process added it meanwhile
                    status = self._update(service, username, password)
            api.Error.raise_for_status(status)
        except api.KeychainDenied as exc:
            raise KeyringLocked(f"Can't store password on keychain: {exc}") from exc
        except api.Error as exc:
            raise PasswordSetError(f"Can't store password on keychain: {exc}") from exc

    def _query(self, service: str, username: str) -> Any:  # noqa: ANN401
        api = self._api
        return api.create_query(
            kSecClass=api.k_("kSecClassGenericPassword"),
            kSecAttrService=service,
            kSecAttrAccount=username,
        )

    def _update(self, service: str, username: str, password: str) -> int:
        api = self._api
        # Only the data: naming an access list here would ask the user to change it.
        attributes = api.create_query(kSecValueData=password)
        return int(_sec_item_update(api)(self._query(service, username), attributes))

    def _add(self, service: str, username: str, password: str) -> int:
        api = self._api
        item = api.create_query(
            kSecClass=api.k_("kSecClassGenericPassword"),
            kSecAttrService=service,
            kSecAttrAccount=username,
            kSecValueData=password,
        )
        return int(api.SecItemAdd(item, None))


def _sec_item_update(api: Any) -> Any:  # noqa: ANN401
    """Return Security's ``SecItemUpdate`` through keyring's handle on the framework."""
    function = api._sec.SecItemUpdate  # keyring binds Add/CopyMatching/Delete only
    function.restype = api.OS_status
    function.argtypes = (ctypes.c_void_p, ctypes.c_void_p)
    return function


def running_executable(
    platform: str = sys.platform, load: Callable[[str | None], Any] = ctypes.CDLL
) -> str:
    """Return the program the Keychain sees this process as (its access lists name it).

    On macOS that is the process's executable image (``proc_pidpath``): for a framework build
    of Python (Homebrew's ``python@3.x``, python.org's) it is ``.../Python.app/Contents/MacOS/
    Python`` inside the framework, not the ``bin/python3`` that ``sys.executable`` names.
    """
    if platform == "darwin":
        try:
            libproc = load(ctypes.util.find_library("proc"))
            buffer = ctypes.create_string_buffer(PIDPATH_MAX)
            length = libproc.proc_pidpath(os.getpid(), buffer, PIDPATH_MAX)
        except (OSError, AttributeError):
            length = 0
        if length > 0:
            return bytes(buffer.raw[:length]).decode(errors="replace")
    return os.path.realpath(sys.executable)


def keychain_advice(status: int, executable: Callable[[], str] | None = None) -> str:
    """Return what to do about the Keychain's ``status`` (SecBase.h), for exit 69's message.

    The access-list advice names the program as the Keychain records it (``running_executable``).
    """
    program = executable or running_executable
    item = f"in Keychain Access open the '{APP}' item, Access Control, and add"
    if status == -25308:
        return (
            "the macOS Keychain is locked, or may not show its prompt here "
            "(errSecInteractionNotAllowed, -25308): unlock it (`security unlock-keychain`, or "
            "log in at the Mac) and run the command again. Over ssh, or from an agent outside "
            "the GUI session, the Keychain can never ask: run the command once in Terminal at "
            "the Mac and click Always Allow"
        )
    if status == -128:
        return (
            "access to the Keychain item was denied (-128: Deny was clicked, or the prompt was "
            f"cancelled): run the command again and click Always Allow; or {item} {program()}"
        )
    if status == -25293:
        return (
            "the Keychain refused this program (errSecAuthFailed, -25293). First lock and "
            "unlock the login keychain (Keychain Access > File, or `security lock-keychain; "
            "security unlock-keychain`), or restart the Mac. If it persists, the item's "
            "access list does not name this program (after a Python upgrade, or another "
            f"install): {item} {program()}; or delete the item and run `tvmaniac-refreshd "
            "login` again"
        )
    if status == -67030:
        return (
            "the Keychain cannot check this program's code signature (-67030); use Homebrew's "
            "or python.org's Python, whose signature it can check"
        )
    if status == ERR_ITEM_NOT_FOUND:
        return (
            "the Keychain item went missing while it was being used (errSecItemNotFound, "
            "-25300; another program removed it?): run the command again"
        )
    return (
        f"the macOS Keychain failed (status {status}); see `security error {status}`, and "
        "`tvmaniac-refreshd config check`"
    )
