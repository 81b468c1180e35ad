"""Which D-Bus session bus and which keyring backend a caller gets, whatever its environment.

Kept to ``os`` at import: the quick `token` path (quick_token.py) needs it.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping

from tvmaniac_refreshd.storage.safe_files import is_private_dir


class Unsure(Exception):  # not an error: "let keyring decide"
    """The direct read met something keyring handles (a prompt, an error to translate).

    secret_service.py raises it; it lives here so the quick `token` path can catch it without
    importing that module (and ``typing``) when a running daemon answered instead."""


def may_choose_backend_explicitly(environ: Mapping[str, str], platform: str) -> bool:
    """Return whether the user may have chosen a keyring backend (or keyring would refuse to start).

    Cheap stand-in for asking keyring.core: its environment variable, or a keyringrc.cfg where
    keyring looks for one (``keyring.util.platform_``), or one in the legacy data directory
    that keyring refuses to start with. Anywhere but Linux, keyring.core is always asked.
    """
    if environ.get("PYTHON_KEYRING_BACKEND") or not platform.startswith("linux"):
        return True
    home = os.path.expanduser("~")
    roots = (
        os.environ.get("XDG_CONFIG_HOME") or os.path.join(home, ".config"),
        os.environ.get("XDG_DATA_HOME") or os.path.join(home, ".local", "share"),
    )
    return any(
        os.path.exists(os.path.join(root, "python_keyring", "keyringrc.cfg")) for root in roots
    )


def logind_runtime_dir() -> str:
    """Return the runtime directory systemd-logind makes for this uid."""
    return f"/run/user/{os.geteuid()}"


def runtime_directories(environ: Mapping[str, str]) -> list[str]:
    """Return where this user's session bus may listen: ``$XDG_RUNTIME_DIR``, then the
    directory logind makes for the uid, ``/run/user/<uid>``, which cron and ``su -`` callers
    (with no ``XDG_RUNTIME_DIR``) share with the desktop session. Only directories of ours
    alone: ``export XDG_RUNTIME_DIR=/tmp`` setups exist, where another local user could run a
    bus of his own at ``bus``."""
    candidates = [environ.get("XDG_RUNTIME_DIR") or "", logind_runtime_dir()]
    found: list[str] = []
    for path in candidates:
        if path and path not in found and is_private_dir(path):
            found.append(path)
    return found


def adopt_session_bus(environ: dict[str, str] | os._Environ[str]) -> None:
    """Point D-Bus clients at the user's bus socket when nothing said where (cron, ``su -``,
    ``env -i``, a service manager): the first ``bus`` socket of ours in ``runtime_directories``.

    Only a socket of ours in a runtime directory of ours: a bus someone else listens on would
    receive every secret we store.
    """
    if environ.get("DBUS_SESSION_BUS_ADDRESS"):
        return
    for runtime in runtime_directories(environ):
        try:
            info = os.lstat(f"{runtime}/bus")
        except OSError:
            continue
        if stat.S_ISSOCK(info.st_mode) and info.st_uid == os.geteuid():
            environ["DBUS_SESSION_BUS_ADDRESS"] = f"unix:path={runtime}/bus"
            return
