"""Install, remove and inspect the OS service: the parts shared by systemd and launchd.

The unit files in ``systemd/`` and ``launchd/`` are the single source of truth; this module
finds them (in the wheel, or in the source tree), renders this installation's absolute paths
into them, writes them atomically and drives the service manager through an injected runner.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol, TextIO

from tvmaniac_refreshd.core.errors import ServiceError, UsageError
from tvmaniac_refreshd.core.shipped import shipped_file
from tvmaniac_refreshd.storage import safe_files

Runner = Callable[[Sequence[str]], subprocess.CompletedProcess[str]]
# A service manager that has not answered in this long is not going to.
COMMAND_TIMEOUT = 60


def run_command(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` (never through a shell) and capture its output.

    Raises:
        ServiceError: if the program does not exist or does not finish in time.
    """
    try:
        return subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except FileNotFoundError:
        raise ServiceError(f"{argv[0]} was not found on PATH") from None
    except subprocess.TimeoutExpired:
        raise ServiceError(f"`{' '.join(argv)}` did not finish in {COMMAND_TIMEOUT}s") from None


def template(relative: str) -> Path:
    """Return a shipped file such as ``systemd/tvmaniac-refreshd.service``."""
    found = shipped_file(relative)
    if found is not None:
        return found
    raise ServiceError(f"the packaged file {relative} is missing; reinstall tvmaniac-refreshd")


def exec_argv(config: str | None) -> list[str]:
    """Return the absolute command that starts this installation.

    The interpreter itself is the main process (no wrapper script, no shell), which is what
    ``NotifyAccess=main`` and launchd's process tracking need.
    """
    argv = [stable_path(sys.executable), "-m", "tvmaniac_refreshd"]
    if config:
        argv += ["--config", str(Path(config).resolve())]
    return argv


# Homebrew keeps each version of a formula in PREFIX/Cellar/NAME/VERSION and points
# PREFIX/opt/NAME at the current one: `brew upgrade` and `brew cleanup` delete the old version.
_CELLAR = re.compile(r"(?P<prefix>/.+)/Cellar/(?P<name>[^/]+)/[^/]+/(?P<rest>.+)")


def stable_path(executable: str) -> str:
    """Return ``executable`` by a path that survives upgrades: Homebrew's ``opt/`` link for a
    versioned ``Cellar/`` path, when it leads to the same file; else ``executable`` as it is.

    A unit or plist that names ``Cellar/python@3.12/3.12.4/...`` breaks at the next upgrade.
    """
    match = _CELLAR.fullmatch(executable)
    if match is None:
        return executable
    stable = f"{match['prefix']}/opt/{match['name']}/{match['rest']}"
    try:
        same = os.path.samefile(stable, executable)
    except OSError:
        return executable
    return stable if same else executable


def write_atomically(path: Path, content: bytes) -> None:
    """Write a unit or plist (0644, as the service manager reads it) atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    safe_files.write_atomically(path, content, mode=0o644)


def check_renderable(values: Iterable[str]) -> None:
    """Refuse any value that would be rendered into a unit or plist with a control character.

    A newline in ``--config`` would start a new line of the unit (``ExecStart=...`` of its
    own); the other control characters have no business in a path or argument either.

    Raises:
        UsageError: naming the value's position, never repeating it (it may be garbled).
    """
    for value in values:
        bad = sorted({f"U+{ord(char):04X}" for char in value if unicodedata.category(char) == "Cc"})
        if bad:
            raise UsageError(
                f"refusing to write a service file: a path or argument contains control "
                f"characters ({', '.join(bad)}), which could inject lines into it; "
                "rename it or pass another --config"
            )


@dataclass
class Plan:
    """What an install or uninstall does, so that --dry-run can show it without doing it."""

    write: dict[Path, bytes] = field(default_factory=dict)
    remove: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def show(self, out: TextIO) -> None:
        for path, content in self.write.items():
            out.write(f"would write {path}:\n")
            for line in content.decode().splitlines():
                out.write(f"    {line}\n")
        for path in self.remove:
            out.write(f"would remove {path}\n")


# daemon: a long-running `run`; timer: `refresh --all` every hour.
ServiceMode = Literal["daemon", "timer"]
MODES: tuple[ServiceMode, ...] = ("daemon", "timer")


def other_mode(mode: ServiceMode) -> ServiceMode:
    """The mode that installing ``mode`` replaces."""
    return "timer" if mode == "daemon" else "daemon"


@dataclass(frozen=True)
class ServiceState:
    """What `service status`, `status` and `config check` report."""

    manager: str  # "systemd" or "launchd"
    mode: ServiceMode | None  # None when not installed
    active: str  # the manager's own word: active, inactive, failed, running, ...
    detail: str = ""  # e.g. the daemon's STATUS= text, the last result
    lingering: bool | None = None  # systemd: does the user manager outlive logins?
    files: tuple[str, ...] = ()
    # What keeps the service from working and what to do, e.g. the unit's interpreter is gone.
    problem: str = ""
    failed: bool = False  # the manager counts the service as failed (`service status` exits 1)
    start: str | None = None  # the command that starts it, when it is installed but not running
    # Not failures, but worth saying: e.g. the agent runs another installation's program.
    warnings: list[str] = field(default_factory=list)
    # False where the manager cannot run our units at all (systemd is not PID 1): nothing to
    # recommend installing; ``detail`` says why and what to do instead.
    available: bool = True

    @property
    def timer_active(self) -> bool:
        """In timer mode, with the timer running: it will refresh what is due."""
        return self.mode == "timer" and self.active.startswith("active")

    def as_dict(self) -> dict[str, object]:
        return {
            "manager": self.manager,
            "available": self.available,
            "installed": self.mode is not None,
            "mode": self.mode,
            "active": self.active,
            "detail": self.detail,
            "lingering": self.lingering,
            "files": list(self.files),
            "problem": self.problem or None,
            "failed": self.failed,
            "start": self.start,
            "warnings": list(self.warnings),
        }


class ServiceManager(Protocol):
    """systemd (Linux) or launchd (macOS) for the current user."""

    name: str

    def install(
        self, mode: ServiceMode, argv: Sequence[str], *, dry_run: bool, out: TextIO
    ) -> None: ...

    def uninstall(self, *, dry_run: bool, out: TextIO) -> None: ...

    def state(self) -> ServiceState: ...

    def probe(self) -> None:
        """Raise ServiceUnavailable if this user has no service manager to install into."""


def systemd_booted(run: str = "/run") -> bool:
    """Return whether systemd is this machine's service manager (sd_booted(3): the directory
    systemd makes at boot). Not so in most containers, WSL without systemd, or a chroot."""
    return os.path.isdir(os.path.join(run, "systemd", "system"))
