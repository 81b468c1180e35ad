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
import tempfile
import termios
import time
from collections.abc import Iterator
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

    def __init__(
        self,
        argv: list[str],
        home: Path,
        env: dict[str, str] | None = None,
        user: str | None = None,
    ) -> None:
        self.fd_parent, fd_child = pty.openpty()
        env = {
            "PATH": os.environ.get("PATH", os.defpath),
            "HOME": str(home),
            "TERM": "dumb",
            "PS1": "$ ",
            "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_DATA_HOME": str(home / ".local/share"),
            **(env or {}),
        }
        self.process = subprocess.Popen(
            argv,
            stdin=fd_child,
            stdout=fd_child,
            stderr=fd_child,
            env=env,
            start_new_session=True,
            user=user,
            group="nogroup" if user else None,
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


# The recipes of `completion --help` and the guide, for a user without root: each writes only
# under HOME, and the shell then finds the script by itself at its next start.
RECIPES = {
    "bash": "echo 'eval \"$(tvmaniac-refreshd completion bash)\"' >> ~/.bashrc",
    "zsh": (
        "mkdir -p ~/.zfunc && tvmaniac-refreshd completion zsh > ~/.zfunc/_tvmaniac-refreshd\n"
        "printf '%s\\n' 'fpath=(~/.zfunc $fpath)' 'autoload -Uz compinit && compinit -u'"
        " >> ~/.zshrc"
    ),
    "fish": (
        "mkdir -p ~/.config/fish/completions && tvmaniac-refreshd completion fish "
        "> ~/.config/fish/completions/tvmaniac-refreshd.fish"
    ),
}
INTERACTIVE = {"bash": ["bash", "-i"], "zsh": ["zsh", "-i"], "fish": ["fish", "-i"]}


def as_user() -> str | None:
    """Run as `nobody` when the tests run as root, so that a recipe needing root fails."""
    return "nobody" if os.geteuid() == 0 else None


@pytest.fixture
def open_tmp() -> Iterator[Path]:
    """A temporary directory another user may enter (pytest's own is its owner's alone)."""
    path = Path(tempfile.mkdtemp(prefix="tvm-completion-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize("shell", sorted(RECIPES))
def test_the_recipe_works_without_root_and_completes_account_and_job_names(
    shell: str, open_tmp: Path
) -> None:
    home = open_tmp / "home"
    home.mkdir()
    bin_dir = open_tmp / "bin"
    bin_dir.mkdir()
    command = bin_dir / PROG
    command.write_text(f'#!/bin/sh\nexec {sys.executable} -m tvmaniac_refreshd "$@"\n')
    command.chmod(0o755)
    config = home / "two.toml"
    config.write_text(
        "".join(
            f'[accounts.{name}]\nprovider = "trakt"\nclient_id = "c"\n' for name in ("work", "home")
        )
        + '[jobs.nightly-sync]\ncommand = ["true"]\nevery = "6h"\naccount = "work"\n'
    )
    if os.geteuid() == 0:
        for path in (home, config):
            shutil.chown(path, "nobody", "nogroup")
    env = {
        "PATH": f"{bin_dir}:{os.environ.get('PATH', os.defpath)}",
        "HOME": str(home),
        "PYTHONPATH": str(REPO),
        "TERM": "dumb",
    }
    recipe = subprocess.run(
        ["sh", "-c", RECIPES[shell]],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        user=as_user(),
        group="nogroup" if as_user() else None,
    )
    assert recipe.returncode == 0, recipe.stderr
    terminal = Terminal(INTERACTIVE[shell], home, env=env, user=as_user())
    try:
        terminal.type("echo started\n")
        assert terminal.wait_for("started"), terminal.screen
        terminal.type(f"{PROG} tok\t")
        assert terminal.wait_for(f"{PROG} token"), terminal.screen
        terminal.type("\x15")
        terminal.type(f"{PROG} --config {config} --account wo\t")
        assert terminal.wait_for("--account work"), terminal.screen
        terminal.type("\x15")
        terminal.type(f"{PROG} --config {config} job run nigh\t")
        assert terminal.wait_for("job run nightly-sync"), terminal.screen
    finally:
        terminal.close()
