"""launchd agents on macOS: render the plist with plistlib, and drive launchctl.

Only the modern verbs are used (bootstrap, bootout, enable, kickstart); never load/unload.
"""

from __future__ import annotations

import os
import plistlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from tvmaniac_refreshd.core.errors import ServiceError
from tvmaniac_refreshd.service.base import (
    Plan,
    Runner,
    ServiceState,
    check_renderable,
    template,
    write_atomically,
)

LABELS = {"daemon": "com.tvmaniac.refreshd", "timer": "com.tvmaniac.refreshd.refresh"}
# launchctl's "not loaded" answers, which bootout of an absent job gives.
NOT_LOADED = (3, 36, 113)


def render(mode: str, argv: Sequence[str], logs: Path) -> bytes:
    """Return the agent plist of ``mode`` with this installation's command and log paths."""
    check_renderable([*argv, str(logs)])
    with template(f"launchd/{LABELS[mode]}.plist").open("rb") as handle:
        agent: dict[str, Any] = plistlib.load(handle)
    arguments = agent["ProgramArguments"]
    agent["ProgramArguments"] = [*argv, *arguments[1:]]
    for key in ("StandardOutPath", "StandardErrorPath"):
        agent[key] = agent[key].replace("@LOGS@", str(logs))
    return plistlib.dumps(agent)


class Launchd:
    """The per-user (gui/UID) launchd domain."""

    name = "launchd"

    def __init__(self, environ: Mapping[str, str], runner: Runner) -> None:
        self._run = runner
        home = Path(environ.get("HOME") or Path.home())
        self.agent_dir = home / "Library" / "LaunchAgents"
        self.logs = home / "Library" / "Logs" / "tvmaniac-refreshd"
        self.domain = f"gui/{os.getuid()}"

    def _path(self, mode: str) -> Path:
        return self.agent_dir / f"{LABELS[mode]}.plist"

    def _launchctl(self, *args: str, ok: Sequence[int] = (0,)) -> None:
        result = self._run(["launchctl", *args])
        if result.returncode not in ok:
            message = (result.stderr or result.stdout).strip()
            raise ServiceError(f"`launchctl {' '.join(args)}` failed: {message}")

    def install(self, mode: str, argv: Sequence[str], *, dry_run: bool, out: TextIO) -> None:
        """Write the agent of ``mode``, replace the other mode's, and (re)start it."""
        other = "timer" if mode == "daemon" else "daemon"
        plan = Plan(write={self._path(mode): render(mode, argv, self.logs)})
        if self._path(other).exists():
            plan.remove.append(self._path(other))
        label = f"{self.domain}/{LABELS[mode]}"
        commands = [
            ["bootout", f"{self.domain}/{LABELS[other]}"],
            ["bootout", label],
            ["bootstrap", self.domain, str(self._path(mode))],
            ["enable", label],
            ["kickstart", "-k", label],
        ]
        if dry_run:
            plan.show(out)
            for command in commands:
                out.write(f"would run: launchctl {' '.join(command)}\n")
            return
        self.logs.mkdir(parents=True, exist_ok=True)
        for path, content in plan.write.items():
            write_atomically(path, content)
        self._launchctl(*commands[0], ok=(0, *NOT_LOADED))
        for path in plan.remove:
            path.unlink(missing_ok=True)
        self._launchctl(*commands[1], ok=(0, *NOT_LOADED))
        for command in commands[2:]:
            self._launchctl(*command)
        out.write(f"Installed and started {LABELS[mode]} ({self._path(mode)}).\n")
        out.write(f"Its crash output goes to {self.logs}.\n")

    def uninstall(self, *, dry_run: bool, out: TextIO) -> None:
        """Boot out, disable and remove whichever agents are installed; fine if none are."""
        present = [mode for mode in LABELS if self._path(mode).exists()]
        for mode in present:
            label = f"{self.domain}/{LABELS[mode]}"
            if dry_run:
                out.write(f"would run: launchctl bootout {label}\n")
                out.write(f"would run: launchctl disable {label}\n")
                out.write(f"would remove {self._path(mode)}\n")
                continue
            self._launchctl("bootout", label, ok=(0, *NOT_LOADED))
            self._launchctl("disable", label)
            self._path(mode).unlink(missing_ok=True)
        if not present:
            out.write("No tvmaniac-refreshd agents were installed; nothing to do.\n")

    def state(self) -> ServiceState:
        """Report the installed agent; `launchctl print` is shown, never parsed for logic."""
        mode = next((mode for mode in LABELS if self._path(mode).exists()), None)
        if mode is None:
            return ServiceState("launchd", None, "not installed")
        result = self._run(["launchctl", "print", f"{self.domain}/{LABELS[mode]}"])
        active = "loaded" if result.returncode == 0 else "not loaded"
        return ServiceState("launchd", mode, active, files=(str(self._path(mode)),))
