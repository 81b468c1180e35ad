"""`completion bash|zsh|fish`: each script is loaded into its real shell, interactive on a
pseudo-terminal, and TAB completes a verb and a sub-verb as a user would see it."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import shutil
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from tests.support.harness import REPO

PROG = "tvmaniac-refreshd"
# How long a shell may take to show the completed line on a busy machine: a bound, not a wait.
DEADLINE = 30.0
SHELLS = {
    # Each starts without the user's startup files, then loads the generated script.
    "bash": (["bash", "--norc", "--noprofile", "-i"], "source {script}\n"),
    "zsh": (["zsh", "-f", "-i"], "autoload -Uz compinit && compinit -u && source {script}\n"),
    "fish": (["fish", "--no-config", "-i"], "source {script}\n"),
}


def generated(shell: str, tmp_path: Path) -> Path:
    result = subprocess.run(
        [sys.executable, "-m", "tvmaniac_refreshd", "completion", shell],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=60,
        check=True,
    )
    path = tmp_path / f"completion.{shell}"
    path.write_text(result.stdout)
    return path


class Terminal:
    """An interactive shell on a pseudo-terminal; what it draws is collected as text."""

    def __init__(self, argv: list[str], home: Path) -> None:
        self.fd_parent, fd_child = pty.openpty()
        env = {
            "PATH": os.environ.get("PATH", os.defpath),
            "HOME": str(home),
            "TERM": "dumb",
            "PS1": "$ ",
            "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_DATA_HOME": str(home / ".local/share"),
        }
        self.process = subprocess.Popen(
            argv,
            stdin=fd_child,
            stdout=fd_child,
            stderr=fd_child,
            env=env,
            start_new_session=True,
            # fish insists on a controlling terminal, as a login would give it.
            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),  # noqa: PLW1509
        )
        os.close(fd_child)
        self.screen = ""

    def type(self, text: str) -> None:
        os.write(self.fd_parent, text.encode())

    def wait_for(self, expected: str) -> bool:
        deadline = time.monotonic() + DEADLINE
        while expected not in self.screen and time.monotonic() < deadline:
            ready, _, _ = select.select([self.fd_parent], [], [], 0.2)
            if ready:
                try:
                    self.screen += os.read(self.fd_parent, 65536).decode(errors="replace")
                except OSError:
                    break
        return expected in self.screen

    def close(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)
        os.close(self.fd_parent)


@pytest.mark.parametrize("shell", sorted(SHELLS))
def test_tab_completes_a_verb_and_a_sub_verb(shell: str, tmp_path: Path) -> None:
    if shell == "fish" and shutil.which("fish") is None:
        pytest.fail("fish is missing: run `make system-deps` (scripts/install-system-deps.sh)")
    argv, load = SHELLS[shell]
    script = generated(shell, tmp_path)
    terminal = Terminal(argv, tmp_path)
    try:
        terminal.type(load.format(script=script))
        terminal.type("echo loaded-$((6*7))\n" if shell != "fish" else "echo loaded-(math 6\\*7)\n")
        assert terminal.wait_for("loaded-42"), terminal.screen
        terminal.type(f"{PROG} tok\t")
        assert terminal.wait_for(f"{PROG} token"), terminal.screen
        terminal.type("\x15")  # ^U: clear the line
        terminal.type(f"{PROG} service ins\t")
        assert terminal.wait_for(f"{PROG} service install"), terminal.screen
        terminal.type("\x15")
        terminal.type(f"{PROG} token --min-v\t")
        assert terminal.wait_for(f"{PROG} token --min-valid"), terminal.screen
    finally:
        terminal.close()


def test_an_unknown_shell_is_a_usage_error() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tvmaniac_refreshd", "completion", "tcsh"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=60,
        check=False,
    )

    assert (result.returncode, result.stdout) == (2, "")
    assert "invalid choice" in result.stderr
