"""What systemd's answers and our installed unit files mean, in words for `service status`
and `service install`: why a service stopped, and which installation a unit runs."""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from pathlib import Path

from tvmaniac_refreshd.core.locations import APP

# Lines `service install` fills in from this installation: a unit that differs from the one
# rendered now only in these was written by another installation, not edited by the user.
INSTALLATION_LINES = ("ExecStart=", "ExecReload=", "BindReadOnlyPaths=")
REINSTALL = f"run `{APP} service install` from the current installation"
# What our exit statuses mean (cli/parser.py's EXIT_CODES), and systemd's own 203, for
# `service status` in both modes.
EXIT_MEANINGS = {
    "1": "failure",
    "69": "keyring unavailable",
    "75": "temporary failure, tokens kept",
    "77": "login needed",
    "78": f"invalid configuration: run `{APP} config check`",
    "203": f"the interpreter could not be started (203/EXEC): {REINSTALL}",
}
# systemd's Result= words that are not an exit status of ours.
RESULT_MEANINGS = {
    "watchdog": "the watchdog stopped it: the daemon stopped answering",
    "timeout": "it did not start or stop in time",
    "start-limit-hit": "started too often in a row; systemd stopped trying",
    "oom-kill": "killed for running out of memory",
    "core-dump": "it crashed",
    "signal": "killed by a signal",
}


def exec_interpreter(unit: bytes) -> str | None:
    """Return the program of a unit's first ``ExecStart=`` (as quote_exec wrote it), if any."""
    for line in unit.decode(errors="replace").splitlines():
        if line.startswith("ExecStart="):
            try:
                words = shlex.split(line.removeprefix("ExecStart="))
            except ValueError:
                return None
            return words[0].replace("%%", "%").replace("$$", "$") if words else None
    return None


def installation_only(old: bytes, new: bytes) -> bool:
    """Whether two renderings of a unit differ only in what the installation fills in."""

    def rest(content: bytes) -> list[str]:
        lines = content.decode(errors="replace").splitlines()
        return [line for line in lines if not line.startswith(INSTALLATION_LINES)]

    return rest(old) == rest(new)


def exit_reason(fields: Mapping[str, str]) -> str:
    """Say why a service stopped, from `systemctl show`'s Result, ExecMain* fields."""
    result = fields.get("Result", "")
    status = fields.get("ExecMainStatus", "")
    if fields.get("ExecMainCode") == "1" or result == "exit-code":  # CLD_EXITED
        meaning = EXIT_MEANINGS.get(status)
        reason = f"exit status {status}" + (f", {meaning}" if meaning else "")
        return reason if result in ("exit-code", "success", "") else f"{reason}; {result}"
    return RESULT_MEANINGS.get(result, f"result: {result or '?'}")


def replacing(path: Path, old: bytes, new: bytes, interpreter: str) -> str:
    """What install says when it overwrites a unit of ours that differs from its rendering."""
    if installation_only(old, new):
        was = exec_interpreter(old)
        if was is None or was == exec_interpreter(new):
            return f"Updating {path.name} to this installation's paths\n"
        return f"Updating {path.name} to this installation ({interpreter}; it ran {was})\n"
    # Our units are regenerated on every install; edits belong in a drop-in.
    return (
        f"Replacing {path}, which differed from the packaged unit (an edit, or another "
        f"version's unit). Keep local changes in a drop-in instead: systemctl --user edit "
        f"{path.name}\n"
    )
