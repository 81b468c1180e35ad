"""A new user's first run: a wheel installed in a fresh venv, no config, the emulator as Trakt.

Everything runs as a user would: the `tvmaniac-refreshd` console script of the installed wheel
(not this source tree), the emulator started as `python -m trakt_emulator`, approval through
the emulator's control API. The messages checked are the exact ones the user reads.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.harness import REPO, wait_until
from tests.support.keyring_session import KeyringSession
from trakt_emulator import EmulatorControl
from trakt_emulator.emulator import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET

PIP_TIMEOUT = 600  # a cold pip cache downloads the dependencies from PyPI once


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the wheel once and install it, with its dependencies, in a fresh venv."""
    root = tmp_path_factory.mktemp("first-run")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--wheel-dir", str(root / "dist"), str(REPO)],
        check=True,
        timeout=PIP_TIMEOUT,
    )
    wheels = list((root / "dist").glob("tvmaniac_refreshd-*.whl"))
    assert len(wheels) == 1, wheels
    venv = root / "venv"
    # Without its own pip (ensurepip is the slow part): this pip installs into it.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    subprocess.run(
        [*pip, "--python", str(venv / "bin" / "python"), "install", str(wheels[0])],
        check=True,
        timeout=PIP_TIMEOUT,
    )
    return venv / "bin" / "tvmaniac-refreshd"


@pytest.fixture
def emulator_process(tmp_path: Path) -> Iterator[EmulatorControl]:
    """`python -m trakt_emulator` as a user starts it, with a 1 s polling interval."""
    port_file = tmp_path / "emulator-url"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "trakt_emulator",
            "--device-interval",
            "1",
            "--port-file",
            str(port_file),
        ],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield EmulatorControl.from_port_file(port_file, timeout=30)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


class User:
    """A home without any config, the private keyring, and the installed command."""

    def __init__(self, command: Path, home: Path, keyring: KeyringSession) -> None:
        self.command = command
        self.home = home
        self.env = {
            **keyring.env,
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_RUNTIME_DIR": str(home / "run"),
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        }
        for variable in ("PYTHONPATH", "TVMANIAC_REFRESHD_CONFIG", "TVMANIAC_REFRESHD_ACCOUNT"):
            self.env.pop(variable, None)
        (home / "run").mkdir(mode=0o700, parents=True)

    def run(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.command), *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env,
            cwd=self.home,  # not the source tree: only the installed wheel can answer
            timeout=60,
            check=False,
        )

    def spawn(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [str(self.command), *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
            cwd=self.home,
        )


def test_from_a_wheel_to_a_token(
    installed: Path,
    emulator_process: EmulatorControl,
    clean_keyring: KeyringSession,
    tmp_path: Path,
) -> None:
    user = User(installed, tmp_path / "home", clean_keyring)
    config = tmp_path / "home" / ".config" / "tvmaniac-refreshd" / "config.toml"
    url = emulator_process.url

    # 1. No config yet: the way out is named.
    first = user.run("status")
    assert (first.returncode, first.stdout) == (78, "")
    assert first.stderr == (
        f"tvmaniac-refreshd: invalid configuration in {config}:\n"
        "  - the file does not exist; create it with `tvmaniac-refreshd config init`, or point "
        "--config or $TVMANIAC_REFRESHD_CONFIG at yours\n"
    )

    # 2. The shipped example is in the wheel.
    example = user.run("config", "example")
    assert example.returncode == 0
    assert example.stdout == (REPO / "config" / "refreshd.example.toml").read_text()

    # 3. config init, then what it says: set-secret; and the emulator's URLs (README).
    init = user.run("config", "init", "--client-id", DEFAULT_CLIENT_ID)
    assert (init.returncode, init.stderr) == (0, "")
    assert init.stdout == (
        f"Wrote {config} (readable only by you).\n"
        "Next:\n"
        "  tvmaniac-refreshd config set-secret   # the client secret, kept in the keyring\n"
        "  tvmaniac-refreshd login\n"
    )
    with config.open("a", encoding="utf-8") as handle:
        handle.write(f'auth_url = "{url}"\napi_url = "{url}"\n')
    secret = user.run("config", "set-secret", stdin=DEFAULT_CLIENT_SECRET + "\n")
    assert (secret.returncode, secret.stderr) == (0, "")
    assert secret.stdout == "Stored the client secret of 'default' in the keyring.\n"

    # 4. Not logged in yet: the health check says so.
    before = user.run("status", "--check")
    assert before.returncode == 77
    assert before.stderr == "tvmaniac-refreshd: needs `login`: default\n"

    # 5. login, approved by hand through the control API.
    login = user.spawn("login")
    code = emulator_process.wait_for_user_code(timeout=30)
    emulator_process.approve(code)
    out, err = login.communicate(timeout=60)
    assert (login.returncode, err) == (0, "")
    lifetime = "7d"  # a moment after the issue time still reads 7d (issue 25)
    assert out == (
        f"To log in, open {url}/activate and enter the code: {code}\n"
        "The code is valid for 10m.\n"
        "Waiting for approval...\n"
        # Who logged in, as Trakt's /users/settings names the user who approved the code.
        "Logged in as 'alice': account 'default' is stored in the keyring; the access token is "
        "valid for "
        f"{lifetime}.\n"
        "Check it any time with `tvmaniac-refreshd status`.\n"
    )

    # 6. token prints the access token the emulator issued, and nothing else.
    token = user.run("token")
    grants = emulator_process.state()["grants"]
    assert isinstance(grants, list)
    assert (token.returncode, token.stderr) == (0, "")
    assert token.stdout == f"{grants[0]['access_token']}\n"

    # 7. The health check passes.
    after = user.run("status", "--check")
    assert (after.returncode, after.stdout, after.stderr) == (0, "", "")


def readme_first_run() -> list[str]:
    """The shell block of the README's "A first run" section, as a list of lines."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## A first run", 1)[1].split("\n## ", 1)[0]
    return section.split("```sh\n", 1)[1].split("```", 1)[0].splitlines()


def test_the_guide_shows_the_readme_s_first_run() -> None:
    guide = (REPO / "docs" / "guide" / "first-run.md").read_text(encoding="utf-8")

    assert "\n".join(readme_first_run()) in guide


def listening(control: EmulatorControl) -> bool:
    try:
        return control.health()
    except OSError:  # not listening yet
        return False


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_readme_s_first_run_as_printed(
    installed: Path, clean_keyring: KeyringSession, tmp_path: Path
) -> None:
    """The README's try-out, line by line in bash, with the installed wheel's command: only the
    port is another (a free one), and the code is approved through the emulator's control API
    where a person would open the page."""
    port = free_port()
    lines = [line.replace("8085", str(port)) for line in readme_first_run()]
    emulator_line, rest = lines[0], lines[1:]
    assert emulator_line.startswith("python3 -m trakt_emulator --port ")
    user = User(installed, tmp_path / "home", clean_keyring)
    env = {**user.env, "PATH": f"{installed.parent}:{user.env['PATH']}"}
    # The README starts it in the background with `&`; here the test holds it, to stop it.
    emulator = subprocess.Popen(
        ["bash", "-c", emulator_line.split("&", 1)[0]],
        cwd=REPO,  # from the clone, as the README says
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        control = EmulatorControl(f"http://127.0.0.1:{port}")
        wait_until(lambda: listening(control), timeout=30, what="the emulator to listen")

        def approve() -> None:
            control.approve(control.wait_for_user_code(timeout=60))

        approver = threading.Thread(target=approve, daemon=True)
        approver.start()
        result = subprocess.run(
            ["bash", "-e", "-c", "\n".join(rest)],
            cwd=user.home,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        approver.join(30)
        grants = control.state()["grants"]
    finally:
        emulator.send_signal(signal.SIGTERM)
        emulator.wait(timeout=30)

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert isinstance(grants, list)
    assert len(grants) == 1
    out = result.stdout
    assert f"To log in, open http://127.0.0.1:{port}/activate and enter the code: " in out
    assert "Logged in as 'alice': account 'try' is stored in the keyring" in out
    assert f"\n{grants[0]['access_token']}\n" in out  # `token`
    assert "\ntry: active\n" in f"\n{out}"  # `status`
    config = user.home / "tvmaniac-try.toml"
    assert "[accounts.try]" in config.read_text()
    # The try-out's own account: nothing under the real login's name.
    assert clean_keyring.lookup("tvmaniac-refreshd", "default") is None
    assert clean_keyring.lookup("tvmaniac-refreshd", "try") is not None


# The guide's recipe for `man tvmaniac-refreshd` after pipx or the venv recipe (Install).
MAN_RECIPE = [
    'page="$(dirname "$(readlink -f "$(command -v tvmaniac-refreshd)")")/../share/man/man1/'
    'tvmaniac-refreshd.1"',
    'mkdir -p ~/.local/share/man/man1 && ln -sf "$(realpath "$page")" ~/.local/share/man/man1/',
]


def test_the_man_page_after_a_venv_or_pipx_install(installed: Path, tmp_path: Path) -> None:
    """As pipx 1.1 leaves it: only the command linked into ~/.local/bin; then the recipe."""
    guide = (REPO / "docs" / "guide" / "first-run.md").read_text(encoding="utf-8")
    assert "\n".join(MAN_RECIPE) in guide
    home = tmp_path / "home"
    (home / ".local" / "bin").mkdir(parents=True)
    (home / ".local" / "bin" / "tvmaniac-refreshd").symlink_to(installed)
    env = {
        "HOME": str(home),
        "PATH": f"{home}/.local/bin:/usr/bin:/bin",
        "MANPAGER": "cat",
        "MANWIDTH": "80",
    }
    man = ["man", "tvmaniac-refreshd"]
    before = subprocess.run(man, env=env, capture_output=True, text=True, timeout=60, check=False)
    subprocess.run(["bash", "-e", "-c", "\n".join(MAN_RECIPE)], env=env, check=True, timeout=60)
    after = subprocess.run(man, env=env, capture_output=True, text=True, timeout=60, check=False)

    assert before.returncode != 0  # what a pipx user meets on Debian 12
    assert after.returncode == 0, after.stderr
    assert "EXIT CODES" in after.stdout
    assert "ENVIRONMENT" in after.stdout
