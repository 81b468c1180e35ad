"""What to say when the Secret Service is locked: one short sentence, then, where there is no
desktop to unlock it in, the shell recipe that works on this machine, indented on lines of its
own so that it can be copied.

gnome-keyring's `--unlock` run next to the daemon that already owns the Secret Service starts a
second daemon that unlocks nothing. Under systemd that daemon is socket-activated and must be
stopped first (the recipe the headless-reboot test runs in a real systemd); without systemd,
`--replace` takes its place (checked against a private session bus).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


def _unlock(option: str) -> tuple[str, ...]:
    # `read -rs` keeps the password out of argv, the terminal and the shell's history.
    return (
        "read -rs PW",
        f'printf %s "$PW" | gnome-keyring-daemon {option}--components=secrets',
        "unset PW",
    )


SYSTEMD_RECIPE = (
    "systemctl --user stop gnome-keyring-daemon.socket gnome-keyring-daemon.service",
    *_unlock("--unlock "),
)
PLAIN_RECIPE = _unlock("--replace --unlock ")
FILE_STORE = (
    "A machine that nobody unlocks after each reboot is better served by the file store:",
    '[store] backend = "file" (see Headless machines in the documentation).',
)


def _never() -> bool:
    return False


@dataclass(frozen=True)
class Machine:
    """Where the advice will be followed."""

    headless: bool = False  # no desktop session to unlock the keyring in
    systemd: bool = True  # systemd is the service manager (PID 1)
    daemon_running: Callable[[], bool] = field(default=_never)  # asked only when advising


def _then(machine: Machine) -> str:
    daemon = "; the running daemon recovers by itself" if machine.daemon_running() else ""
    return f"run the command again{daemon}"


def _recipe(machine: Machine, lead: str) -> str:
    lines = SYSTEMD_RECIPE if machine.systemd else PLAIN_RECIPE
    return "\n".join(
        [
            lead,
            *(f"    {line}" for line in lines),
            f"  then {_then(machine)}.",
            *(f"  {line}" for line in FILE_STORE),
        ]
    )


def locked(machine: Machine, *, who: str | None = None) -> str:
    """The message for a locked gnome-keyring (``who``: the program's name, if known)."""
    subject = f"the keyring is locked ({who})" if who else "the keyring is locked"
    if not machine.headless:
        return (
            f"{subject}: unlock it (log in to the desktop session, or open Passwords and Keys / "
            f"seahorse), then {_then(machine)}"
        )
    return _recipe(machine, f"{subject}; unlock it from a shell (ssh is fine):")


def no_answer(machine: Machine, *, seconds: float, what: str) -> str:
    """The message for a keyring call that did not return: a locked collection's prompt?"""
    first = (
        f"the keyring did not answer within {seconds:.0f}s while {what} (a locked collection "
        "waiting for an unlock prompt?)"
    )
    if not machine.headless:
        return f"{first}: unlock it, then {_then(machine)}"
    return _recipe(machine, f"{first}; unlock it from a shell:")
