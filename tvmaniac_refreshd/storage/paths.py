"""Where config, state and lock files live, from an injected environment (XDG, systemd, macOS)."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

from tvmaniac_refreshd.core.locations import APP, config_file, state_directory


def config_path(
    explicit: str | None, environ: Mapping[str, str], platform: str = sys.platform
) -> Path:
    """Return the config file: ``--config``, else the environment, else XDG."""
    return Path(config_file(explicit, environ, platform))


def state_dir(environ: Mapping[str, str], platform: str = sys.platform) -> Path:
    """Return the directory for non-secret state (last result, next due time; never a token)."""
    return Path(state_directory(environ, platform))


def lock_dir(environ: Mapping[str, str], platform: str = sys.platform) -> Path:
    """Return the directory for per-account refresh locks, shared by every process of this user.

    The runtime dir is per user and on tmpfs, so a stale lock file cannot outlive a reboot; the
    lock itself is an flock, which dies with its holder either way.
    """
    runtime = environ.get("XDG_RUNTIME_DIR")
    if runtime and platform != "darwin":
        return Path(runtime) / APP
    return state_dir(environ, platform) / "locks"


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) readable only by this user, and return it."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def credentials_dir(environ: Mapping[str, str]) -> Path | None:
    """Return systemd's ``$CREDENTIALS_DIRECTORY`` (LoadCredential=), if this process has one."""
    value = environ.get("CREDENTIALS_DIRECTORY")
    return Path(value) if value else None
