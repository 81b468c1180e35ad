"""The launchd agent's log files, which nobody else keeps small.

launchd opens ``StandardOutPath``/``StandardErrorPath`` for the job and never rotates them, and
newsyslog would need root. So the program itself, when the plist says launchd runs it, trims
each file it writes to once it passes ``LIMIT``: the old content moves to ``NAME.1`` (one
generation, replaced each time) and the file starts over. At most about twice ``LIMIT`` each.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from collections.abc import Mapping
from pathlib import Path

from tvmaniac_refreshd.core.locations import APP

# Set in the agent plists' EnvironmentVariables: this process was started by our launchd agent.
SUPERVISOR_VARIABLE = "TVMANIAC_REFRESHD_SUPERVISOR"
# Set in the plist rendered for the user/UID domain (no GUI login at install): the agent runs
# outside any login session, where nothing it posts reaches the screen.
SESSION_VARIABLE = "TVMANIAC_REFRESHD_LAUNCHD_SESSION"
LIMIT = 5 * 1024 * 1024
STREAMS = {1: "stdout.log", 2: "stderr.log"}


def supervised_by_launchd(environ: Mapping[str, str]) -> bool:
    """Return whether our launchd agent started this process."""
    return environ.get(SUPERVISOR_VARIABLE) == "launchd"


def in_background_session(environ: Mapping[str, str]) -> bool:
    """Return whether our launchd agent runs in the user/UID domain (a Background agent)."""
    return supervised_by_launchd(environ) and environ.get(SESSION_VARIABLE) == "Background"


def launchd_log_dir(environ: Mapping[str, str]) -> Path:
    """Return ``~/Library/Logs/tvmaniac-refreshd``, where the agents' output goes."""
    home = Path(environ.get("HOME") or Path.home())
    return home / "Library" / "Logs" / APP


def trim_log(fd: int, path: Path, limit: int = LIMIT) -> bool:
    """Start ``path`` over (keeping its old content as ``path.1``) if ``fd`` writes to it and it
    has grown past ``limit``; return whether it did.

    Truncating through ``fd`` rather than renaming keeps launchd's descriptor valid: it opened
    the file with O_APPEND, so the next write lands at the new end. The lseek covers a
    descriptor opened without O_APPEND.
    """
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size <= limit:
            return False
        named = path.stat()
        if (named.st_dev, named.st_ino) != (info.st_dev, info.st_ino):
            return False  # fd goes elsewhere (the user redirected it): not ours to trim
        shutil.copyfile(path, path.with_name(path.name + ".1"))
        os.ftruncate(fd, 0)
        with contextlib.suppress(OSError):  # a pipe or O_APPEND file needs no seek
            os.lseek(fd, 0, os.SEEK_SET)
    except OSError:
        return False  # a log that cannot be trimmed must not stop a refresh
    return True


def trim_launchd_logs(environ: Mapping[str, str]) -> None:
    """Trim stdout.log and stderr.log when our launchd agent runs this process."""
    if not supervised_by_launchd(environ):
        return
    directory = launchd_log_dir(environ)
    for fd, name in STREAMS.items():
        trim_log(fd, directory / name)
