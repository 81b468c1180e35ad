"""Where a hook runs when we run inside a systemd unit, and what to say when the sandbox bit it.

Our units are sandboxed (an empty home, a private /tmp), which suits the process that holds
the tokens but not a user's hook: it is the user's own script, expected to write where the user
can, as it would from cron. So a hook started from inside a systemd unit runs as a transient
unit of the user's manager (``systemd-run --user``), outside the sandbox, with nothing of ours
but three variables. Without systemd-run it runs in the sandbox, and a failure that looks like
the sandbox's says so and names the drop-in that lifts it.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
from collections.abc import Mapping, Sequence

from tvmaniac_refreshd.core.locations import APP

# What the hook learns, as environment variables (never in an argv: see outside_sandbox).
HOOK_VARIABLES = (
    "TVMANIAC_REFRESHD_ACCOUNT",
    "TVMANIAC_REFRESHD_EVENT",
    "TVMANIAC_REFRESHD_MESSAGE",
)
# A transient unit takes a moment to start and to report back beyond the hook's own time.
SYSTEMD_RUN_SLACK = 15
# The unit a process of a user manager runs in: the last part of its cgroup v2 path.
_UNIT_IN_CGROUP = re.compile(r"^0::/.*/user@\d+\.service/(?:.*/)?([^/]+\.service)$", re.MULTILINE)
# What a hook's failure says when the sandbox stopped it (the C library's words for them).
SANDBOX_ERRORS = (os.strerror(errno.EROFS), os.strerror(errno.ENOENT), os.strerror(errno.EACCES))


def current_unit(environ: Mapping[str, str], cgroup_file: str = "/proc/self/cgroup") -> str | None:
    """Return the user service this process runs in (systemd sets INVOCATION_ID), or None."""
    if not environ.get("INVOCATION_ID"):
        return None
    try:
        with open(cgroup_file, encoding="utf-8", errors="replace") as handle:
            found = _UNIT_IN_CGROUP.search(handle.read())
    except OSError:
        return None
    return found.group(1) if found else None


def hook_unit_name() -> str:
    """A fresh name for a hook's transient unit (shown in its log lines and the journal)."""
    return f"{APP}-hook-{secrets.token_hex(4)}.service"


def outside_sandbox(argv: Sequence[str], *, name: str, event: str, timeout: int) -> list[str]:
    """Return the command that runs hook ``argv`` as the transient unit ``name`` of the user's
    manager.

    ``--setenv=NAME`` without a value passes our value of NAME, so the message never shows in
    an argv. ``--pipe`` hands the hook our pipes, and ``--wait`` returns its exit status.
    """
    return [
        "systemd-run",
        "--user",
        "--quiet",
        "--collect",
        "--wait",
        "--pipe",
        "--service-type=exec",
        f"--unit={name}",
        f"--description={APP} hook ({event})",
        f"--property=RuntimeMaxSec={timeout}",
        *(f"--setenv={variable}" for variable in HOOK_VARIABLES),
        "--",
        *argv,
    ]


def sandbox_hint(unit: str, problem: str) -> str | None:
    """If ``problem`` (a hook's stderr or error) looks like the sandbox's doing, say how to
    lift it for ``unit``; else None."""
    if not any(words in problem for words in SANDBOX_ERRORS):
        return None
    return (
        f"the hook ran inside {unit}'s sandbox, where the home is an empty read-only tmpfs "
        "but for what the unit binds in (ProtectHome=tmpfs), /tmp is the unit's own "
        "(PrivateTmp=yes) and the rest of the system read-only. To let it write a place, add "
        f"a drop-in: `systemctl --user edit {unit}` with the line `[Service]` and then "
        "`BindPaths=/the/path` for a path in your home or `ReadWritePaths=/the/path` elsewhere "
        "(a directory or "
        "file that exists), then restart the unit"
    )
