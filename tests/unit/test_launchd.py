"""The launchd lifecycle against a stateful fake `launchctl` (tests/support/fake_launchctl.py).

The real `service install` / `uninstall` / `status` run (the CLI, the subprocess runner, the
program found on PATH); only the platform is pretended to be macOS. Each scenario ends in the
table state a real launchd would be in, with the exit code the user would see.
"""

from __future__ import annotations

import io
import json
import os
import plistlib
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

import tvmaniac_refreshd.service as service_package
from tests.support import fake_launchctl
from tvmaniac_refreshd.cli.parser import main
from tvmaniac_refreshd.core.errors import ServiceError
from tvmaniac_refreshd.service import launchd as launchd_module
from tvmaniac_refreshd.service.base import run_command
from tvmaniac_refreshd.service.launchd import Launchd

DAEMON = "com.tvmaniac.refreshd"
TIMER = "com.tvmaniac.refreshd.refresh"
UID = os.getuid()
GUI = f"gui/{UID}"
USER = f"user/{UID}"


class Mac:
    """A pretend Mac: a home, a config, and the fake launchctl first on PATH."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **state: Any) -> None:
        self.home = tmp_path / "home"
        self.home.mkdir()
        self.state_file = tmp_path / "launchd.json"
        fake_launchctl.install(tmp_path / "bin", self.state_file, fake_launchctl.new_state(**state))
        monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
        self.config = tmp_path / "config.toml"
        self.config.write_text('[accounts.default]\nprovider = "trakt"\nclient_id = "abc"\n')
        self.environ = {"HOME": str(self.home), "PATH": os.environ["PATH"]}

        def darwin(
            environ: Mapping[str, str], platform: str = "darwin", runner: Any = run_command
        ) -> Any:
            return Launchd(environ, runner)

        monkeypatch.setattr(service_package, "manager_for", darwin)
        # The fake counts time in launchctl calls; waiting between polls adds nothing.
        monkeypatch.setattr(launchd_module, "POLL_INTERVAL", 0.001, raising=False)

    def cli(self, *argv: str) -> tuple[int, str]:
        out, err = io.StringIO(), io.StringIO()
        code = main(
            ["--config", str(self.config), "service", *argv],
            environ=self.environ,
            out=out,
            err=err,
        )
        return code, out.getvalue() + err.getvalue()

    @property
    def table(self) -> dict[str, Any]:
        return fake_launchctl.load(self.state_file)

    def loaded(self, domain: str = GUI) -> dict[str, str]:
        return {
            label: job["state"] for label, job in self.table["domains"][domain]["loaded"].items()
        }

    def disabled(self, domain: str = GUI) -> list[str]:
        return [label for label, d in self.table["domains"][domain]["disabled"].items() if d]

    def plist(self, label: str) -> Path:
        return self.home / "Library" / "LaunchAgents" / f"{label}.plist"


@pytest.fixture
def mac(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Mac:
    return Mac(tmp_path, monkeypatch)


def test_fresh_install_starts_once(mac: Mac) -> None:
    """enable, bootstrap; RunAtLoad starts it and nothing kills that first run (items 1, 3)."""
    code, output = mac.cli("install")

    assert code == 0, output
    assert mac.loaded() == {DAEMON: "running"}
    job = mac.table["domains"][GUI]["loaded"][DAEMON]
    assert (job["runs"], mac.table["kills"]) == (1, 0)
    assert mac.disabled() == []
    verbs = [call[0] for call in mac.table["calls"]]
    assert "kickstart" not in verbs
    assert verbs.index("enable") < verbs.index("bootstrap")


@pytest.mark.parametrize("bootout_code", [36, 0])
def test_reinstall_while_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bootout_code: int
) -> None:
    """bootout answers before the job is gone; install waits, then bootstraps (item 2)."""
    mac = Mac(tmp_path, monkeypatch, stop_ticks=4, bootout_code=bootout_code)
    assert mac.cli("install")[0] == 0

    code, output = mac.cli("install")

    assert code == 0, output
    assert mac.loaded() == {DAEMON: "running"}
    assert mac.table["kills"] == 0
    # A bootstrap while the old job was still SIGTERMed would have been refused (37): the
    # exit 0 above means install waited. And it did wait: the job went through SIGTERMed.
    states = [call for call in mac.table["calls"] if call[0] == "bootout"]
    assert states, "the running job was never booted out"


def test_uninstall_then_install(mac: Mac) -> None:
    """uninstall stops without disabling, so a later install works (item 1)."""
    assert mac.cli("install")[0] == 0

    code, output = mac.cli("uninstall")
    assert code == 0, output
    assert mac.loaded() == {}
    assert mac.disabled() == []
    assert not mac.plist(DAEMON).exists()

    code, output = mac.cli("install")
    assert code == 0, output
    assert mac.loaded() == {DAEMON: "running"}


def test_install_of_a_label_disabled_earlier(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A label an older version (or the user) disabled is enabled before the bootstrap."""
    mac = Mac(tmp_path, monkeypatch)
    table = mac.table
    table["domains"][GUI]["disabled"][DAEMON] = True
    mac.state_file.write_text(json.dumps(table))

    code, output = mac.cli("install")

    assert code == 0, output
    assert mac.loaded() == {DAEMON: "running"}
    assert mac.disabled() == []


def test_daemon_timer_switch(mac: Mac) -> None:
    """Switching modes stops the other agent first and leaves exactly one loaded."""
    assert mac.cli("install")[0] == 0

    code, output = mac.cli("install", "--mode", "timer")
    assert code == 0, output
    assert mac.loaded() == {TIMER: "running"}
    assert not mac.plist(DAEMON).exists()
    assert mac.plist(TIMER).exists()

    code, output = mac.cli("install", "--mode", "daemon")
    assert code == 0, output
    assert mac.loaded() == {DAEMON: "running"}
    assert not mac.plist(TIMER).exists()
    assert mac.table["kills"] == 0


def test_install_without_gui_session(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Over ssh: the user domain, no Aqua limit in the plist, the Keychain caveat (item 4)."""
    mac = Mac(tmp_path, monkeypatch, gui=False)

    code, output = mac.cli("install")

    assert code == 0, output
    assert mac.loaded(USER) == {DAEMON: "running"}
    agent = plistlib.loads(mac.plist(DAEMON).read_bytes())
    assert "LimitLoadToSessionType" not in agent
    assert f"in {USER}" in output
    assert "-25308" in output

    code, output = mac.cli("uninstall")
    assert code == 0, output
    assert mac.loaded(USER) == {}


def test_gui_install_moves_an_agent_out_of_the_user_domain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Installed over ssh first, then from the desktop: one agent, in the GUI domain."""
    mac = Mac(tmp_path, monkeypatch)
    table = mac.table
    table["domains"][USER]["loaded"][DAEMON] = {
        "path": str(mac.plist(DAEMON)),
        "program": "python",
        "arguments": ["python"],
        "state": "running",
        "runs": 1,
        "pid": 7,
        "left": 0,
    }
    mac.state_file.write_text(json.dumps(table))

    assert mac.cli("install")[0] == 0

    assert mac.loaded(USER) == {}
    assert mac.loaded(GUI) == {DAEMON: "running"}


def test_uninstall_is_idempotent(mac: Mac) -> None:
    code, output = mac.cli("uninstall")

    assert code == 0
    assert "nothing to do" in output
    assert mac.loaded() == {}


def test_status_reads_launchd_state(mac: Mac) -> None:
    assert mac.cli("install")[0] == 0

    code, output = mac.cli("status")

    assert code == 0
    assert "running" in output


def test_dry_run_changes_nothing(mac: Mac) -> None:
    code, output = mac.cli("install", "--dry-run")

    assert code == 0
    assert "launchctl enable" in output
    assert "kickstart" not in output
    assert mac.loaded() == {}
    assert not mac.plist(DAEMON).exists()
    assert {call[0] for call in mac.table["calls"]} <= {"print", "print-disabled"}


def test_a_job_that_never_stops_fails_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job stuck in SIGTERMed: install gives up after STOP_TIMEOUT with a clear error."""
    mac = Mac(tmp_path, monkeypatch, stop_ticks=10**9)
    assert mac.cli("install")[0] == 0
    monkeypatch.setattr(launchd_module, "POLL_INTERVAL", 0.5)
    clock = [0.0]

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    runner = fake_launchctl.runner(mac.state_file)
    launchd = Launchd(mac.environ, runner, sleep=sleep, monotonic=lambda: clock[0])

    with pytest.raises(ServiceError, match="still stopping"):
        launchd.install("daemon", ["python"], dry_run=False, out=io.StringIO())
    assert clock[0] >= launchd_module.STOP_TIMEOUT


def test_parsers_read_launchd_formats() -> None:
    from tvmaniac_refreshd.service.launchd import parse_disabled, parse_print  # noqa: PLC0415

    printed = (
        f"{GUI}/{DAEMON} = {{\n\tactive count = 1\n\tstate = running\n\n\tprogram = /x\n"
        "\targuments = {\n\t\t/x\n\t}\n\tpid = 42\n\tlast exit code = (never exited)\n}\n"
    )
    assert parse_print(printed)["state"] == "running"
    assert parse_print(printed)["pid"] == "42"
    disabled = 'disabled services = {\n\t"a" => disabled\n\t"b" => enabled\n\t"c" => true\n}\n'
    assert parse_disabled(disabled) == {"a": True, "b": False, "c": True}


def test_the_fake_refuses_what_launchd_refuses(tmp_path: Path) -> None:
    """The fake is not a yes-machine: each documented refusal, by code."""
    state_file = tmp_path / "state.json"
    program = fake_launchctl.install(
        tmp_path / "bin", state_file, fake_launchctl.new_state(gui=False)
    )
    plist = tmp_path / f"{DAEMON}.plist"
    plist.write_bytes(
        plistlib.dumps(
            {
                "Label": DAEMON,
                "ProgramArguments": ["/x"],
                "RunAtLoad": True,
                "LimitLoadToSessionType": "Aqua",
            }
        )
    )

    def launchctl(*args: str) -> int:
        return subprocess.run([str(program), *args], capture_output=True, check=False).returncode

    assert launchctl("bootstrap", GUI, str(plist)) == 5  # no GUI session
    assert launchctl("bootstrap", USER, str(plist)) == 5  # Aqua-only plist in the user domain
    plist.write_bytes(
        plistlib.dumps({"Label": DAEMON, "ProgramArguments": ["/x"], "RunAtLoad": True})
    )
    assert launchctl("bootout", f"{USER}/{DAEMON}") == 113  # not loaded
    assert launchctl("disable", f"{USER}/{DAEMON}") == 0
    assert launchctl("bootstrap", USER, str(plist)) == 5  # disabled
    assert launchctl("enable", f"{USER}/{DAEMON}") == 0
    assert launchctl("bootstrap", USER, str(plist)) == 0
    assert launchctl("bootstrap", USER, str(plist)) == 5  # already loaded
    assert launchctl("bootout", f"{USER}/{DAEMON}") == 36  # running: still stopping
    assert launchctl("print", f"{USER}/{DAEMON}") == 0  # SIGTERMed, still listed
    assert launchctl("bootstrap", USER, str(plist)) == 37  # while stopping
    assert launchctl("print", f"{USER}/{DAEMON}") == 113  # gone now
    assert launchctl("load", str(plist)) == 64  # legacy verbs refused
