"""Where the config file and the state directory are, as strings, from an injected environment.

The rules behind paths.py, kept free of pathlib: the quick `token` path (quick_token.py) needs
them and is measured in milliseconds.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Mapping

APP = "tvmaniac-refreshd"
# The one place every message and page names for creating and editing a Trakt API app.
TRAKT_APPS = "https://app.trakt.tv/settings/apps"


def _home(environ: Mapping[str, str]) -> str:
    return environ.get("HOME") or os.path.expanduser("~")


def config_file(
    explicit: str | None, environ: Mapping[str, str], platform: str = sys.platform
) -> str:
    """Return the config file: ``--config``, else the environment, else XDG."""
    if explicit:
        return explicit
    if environ.get("TVMANIAC_REFRESHD_CONFIG"):
        return environ["TVMANIAC_REFRESHD_CONFIG"]
    if platform == "darwin":
        return os.path.join(_home(environ), "Library", "Application Support", APP, "config.toml")
    base = environ.get("XDG_CONFIG_HOME") or os.path.join(_home(environ), ".config")
    return os.path.join(base, APP, "config.toml")


def state_directory(environ: Mapping[str, str], platform: str = sys.platform) -> str:
    """Return the directory for non-secret state (last result, next due time; never a token)."""
    if environ.get("STATE_DIRECTORY"):
        # systemd's StateDirectory= may list several; the first one is ours.
        return environ["STATE_DIRECTORY"].split(":")[0]
    if platform == "darwin":
        return os.path.join(_home(environ), "Library", "Application Support", APP)
    base = environ.get("XDG_STATE_HOME") or os.path.join(_home(environ), ".local", "state")
    return os.path.join(base, APP)


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


def is_private_dir(path: str) -> bool:
    """Return whether ``path`` is a real directory (no link) of ours that nobody else can write."""
    try:
        info = os.lstat(path)
    except OSError:
        return False
    return (
        stat.S_ISDIR(info.st_mode)
        and info.st_uid == os.geteuid()
        and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    )


def private_runtime_dir(environ: Mapping[str, str]) -> str | None:
    """Return ``$XDG_RUNTIME_DIR`` if it is ours alone, else None.

    "export XDG_RUNTIME_DIR=/tmp" setups exist: a shared directory where another local user
    can run a bus of his own at ``bus`` or plant our lock files; such a directory is not used.
    """
    runtime = environ.get("XDG_RUNTIME_DIR")
    return runtime if runtime and is_private_dir(runtime) else None


def adopt_session_bus(environ: dict[str, str] | os._Environ[str]) -> None:
    """Point D-Bus clients at the user's bus socket when a service manager did not say where.

    Only a socket of ours in a runtime directory of ours: a bus someone else listens on would
    receive every secret we store.
    """
    if environ.get("DBUS_SESSION_BUS_ADDRESS"):
        return
    runtime = private_runtime_dir(environ)
    if runtime is None:
        return
    try:
        info = os.lstat(f"{runtime}/bus")
    except OSError:
        return
    if stat.S_ISSOCK(info.st_mode) and info.st_uid == os.geteuid():
        environ["DBUS_SESSION_BUS_ADDRESS"] = f"unix:path={runtime}/bus"


def systemd_booted(run: str = "/run") -> bool:
    """Return whether systemd is this machine's service manager (sd_booted(3): the directory
    systemd makes at boot). Not so in most containers, WSL without systemd, or a chroot."""
    return os.path.isdir(os.path.join(run, "systemd", "system"))
