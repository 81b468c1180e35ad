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
from tvmaniac_refreshd.service.base import exec_argv, run_command
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


@pytest.mark.parametrize("mode", ["daemon", "timer"])
def test_install_without_gui_session(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    """Over ssh: the user domain loads only a Background agent; a plist without the key is an
    Aqua agent and is refused with 5 (issue 27 finding 1). The caveats are said."""
    mac = Mac(tmp_path, monkeypatch, gui=False)
    label = DAEMON if mode == "daemon" else TIMER

    code, output = mac.cli("install", "--mode", mode)

    assert code == 0, output
    assert mac.loaded(USER) == {label: "running"}
    agent = plistlib.loads(mac.plist(label).read_bytes())
    assert agent["LimitLoadToSessionType"] == "Background"
    assert f"in {USER}" in output
    assert "-25308" in output
    assert "service install` at the Mac" in output  # it stays in user/ until then
    assert "After a reboot it does not start until you open a session" in output
    assert "notification" in output

    code, output = mac.cli("uninstall")
    assert code == 0, output
    assert mac.loaded(USER) == {}


def test_gui_install_moves_an_agent_out_of_the_user_domain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Installed over ssh first, then from the desktop: one agent, in the GUI domain."""
    mac = Mac(tmp_path, monkeypatch, gui=False)
    assert mac.cli("install")[0] == 0
    table = mac.table
    table["domains"][GUI] = {"loaded": {}, "disabled": {}}  # the user logged in at the Mac
    mac.state_file.write_text(json.dumps(table))

    code, output = mac.cli("install")

    assert code == 0, output
    assert mac.loaded(USER) == {}
    assert mac.loaded(GUI) == {DAEMON: "running"}
    agent = plistlib.loads(mac.plist(DAEMON).read_bytes())
    assert agent["LimitLoadToSessionType"] == "Aqua"


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
                "ProgramArguments": ["/bin/sh"],
                "RunAtLoad": True,
                "LimitLoadToSessionType": "Aqua",
            }
        )
    )

    def launchctl(*args: str) -> int:
        return subprocess.run([str(program), *args], capture_output=True, check=False).returncode

    def agent(**keys: Any) -> None:
        plist.write_bytes(
            plistlib.dumps(
                {"Label": DAEMON, "ProgramArguments": ["/bin/sh"], "RunAtLoad": True, **keys}
            )
        )

    assert launchctl("bootstrap", GUI, str(plist)) == 125  # no GUI session: no such domain
    assert launchctl("print", GUI) == 125
    assert launchctl("bootstrap", USER, str(plist)) == 5  # Aqua-only plist in the user domain
    agent()
    assert launchctl("bootstrap", USER, str(plist)) == 5  # no key: an Aqua agent
    agent(LimitLoadToSessionType=["Aqua", "Background"])
    assert launchctl("bootstrap", USER, str(plist)) == 5  # still refused over ssh
    agent(LimitLoadToSessionType="Background")
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


def test_the_fake_refuses_a_background_agent_in_the_gui_domain(tmp_path: Path) -> None:
    state_file = tmp_path / "state.json"
    program = fake_launchctl.install(tmp_path / "bin", state_file, fake_launchctl.new_state())
    plist = tmp_path / f"{DAEMON}.plist"
    for types, code in (("Background", 5), (None, 0)):
        keys = {} if types is None else {"LimitLoadToSessionType": types}
        plist.write_bytes(
            plistlib.dumps({"Label": DAEMON, "ProgramArguments": ["/bin/sh"], **keys})
        )
        result = subprocess.run([str(program), "bootstrap", GUI, str(plist)], check=False)
        assert result.returncode == code, types


def test_the_fake_restarts_per_keepalive_and_fails_to_spawn_a_missing_program(
    tmp_path: Path,
) -> None:
    """Jobs exit and come back per KeepAlive; a program that is gone never starts (78)."""
    state = fake_launchctl.new_state()
    program = tmp_path / "python3"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    plist = tmp_path / f"{DAEMON}.plist"
    plist.write_bytes(
        plistlib.dumps(
            {
                "Label": DAEMON,
                "ProgramArguments": [str(program), "run"],
                "RunAtLoad": True,
                "KeepAlive": {"SuccessfulExit": False},
            }
        )
    )
    target = f"{GUI}/{DAEMON}"
    fake_launchctl.bootstrap(state, GUI, str(plist))
    job = state["domains"][GUI]["loaded"][DAEMON]
    fake_launchctl.exited(state, target, 1)
    assert (job["state"], job["runs"], job["last_exit"]) == ("running", 2, "1")
    fake_launchctl.exited(state, target, 0)
    assert (job["state"], job["runs"]) == ("not running", 2)  # a clean exit stays down

    program.unlink()
    fake_launchctl.kickstart(state, [target])
    assert (job["state"], job["pid"], job["spawn_failures"]) == ("spawn scheduled", None, 1)
    printed = fake_launchctl.print_target(state, target)
    assert "last exit code = 78: EX_CONFIG" in printed
    assert "pid =" not in printed


def test_bootout_125_counts_as_not_loaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The user logs out between install's look and its bootout: gui/UID is gone (125), and
    with it the job; that is "not loaded", as Homebrew treats it (finding 12)."""
    mac = Mac(tmp_path, monkeypatch)
    assert mac.cli("install")[0] == 0
    fake = fake_launchctl.runner(mac.state_file)

    def logs_out_at_bootout(argv: Any) -> subprocess.CompletedProcess[str]:
        if argv[1] == "bootout" and argv[2].startswith(GUI):
            table = mac.table
            table["domains"].pop(GUI, None)
            mac.state_file.write_text(json.dumps(table))
        return fake(argv)

    launchd = Launchd(mac.environ, logs_out_at_bootout)
    assert launchd.has_gui
    out = io.StringIO()
    launchd.uninstall(dry_run=False, out=out)

    assert "Stopped and removed" in out.getvalue()
    assert not mac.plist(DAEMON).exists()
    assert any(call[:2] == ["bootout", f"{GUI}/{DAEMON}"] for call in mac.table["calls"])


def _load_by_hand(mac: Mac, program: str) -> None:
    """An agent installed earlier, naming ``program``, loaded as launchd loads it at login."""
    agent = plistlib.loads(mac.plist(DAEMON).read_bytes())
    agent["ProgramArguments"][0] = program
    mac.plist(DAEMON).write_bytes(plistlib.dumps(agent))
    runner = fake_launchctl.runner(mac.state_file)
    assert runner(["launchctl", "bootout", f"{GUI}/{DAEMON}"]).returncode in (0, 36)
    while runner(["launchctl", "print", f"{GUI}/{DAEMON}"]).returncode == 0:
        pass  # each call is a tick of the fake's clock
    assert runner(["launchctl", "bootstrap", GUI, str(mac.plist(DAEMON))]).returncode == 0


def _config_check(mac: Mac) -> list[str]:
    """The `service` lines of `config check`."""
    out, err = io.StringIO(), io.StringIO()
    main(["--config", str(mac.config), "config", "check"], environ=mac.environ, out=out, err=err)
    # The subject is the fifth column on ("ok   service: ..."), not "secret service".
    return [line for line in out.getvalue().splitlines() if line[5:].startswith("service: ")]


def test_a_stale_interpreter_is_reported(mac: Mac, tmp_path: Path) -> None:
    """The plist names a Python that `brew cleanup` removed: launchd accepts it and the spawn
    fails where nobody looks; status and config check say so (finding 5)."""
    assert mac.cli("install")[0] == 0
    gone = str(tmp_path / "Cellar" / "python@3.12" / "3.12.4" / "bin" / "python3.12")
    _load_by_hand(mac, gone)
    assert mac.table["domains"][GUI]["loaded"][DAEMON]["state"] == "spawn scheduled"

    code, output = mac.cli("status")

    assert code == 0
    assert "failed (program missing)" in output
    assert gone in output
    assert "no longer exists" in output
    assert "service install" in output
    line = _config_check(mac)[0]
    assert line.startswith("FAIL"), line
    assert gone in line


def test_another_installations_program_is_named(mac: Mac, tmp_path: Path) -> None:
    """The agent runs another (existing) Python than this installation: a warning, not a
    failure (finding 5)."""
    assert mac.cli("install")[0] == 0
    other = tmp_path / "other-venv" / "bin" / "python3"
    other.parent.mkdir(parents=True)
    other.write_text("#!/bin/sh\n")
    other.chmod(0o755)
    _load_by_hand(mac, str(other))

    code, output = mac.cli("status")

    assert code == 0
    assert "running" in output
    assert f"the agent runs {other}, not this installation's" in output
    ok, warning = _config_check(mac)
    assert ok.startswith("ok"), ok
    assert warning.startswith("warn"), warning
    assert str(other) in warning


def test_homebrew_cellar_path_is_written_as_opt(tmp_path: Path) -> None:
    """`brew upgrade` + `brew cleanup` delete Cellar/NAME/VERSION; opt/NAME follows (item 5)."""
    from tvmaniac_refreshd.service.base import stable_path  # noqa: PLC0415

    cellar = tmp_path / "Cellar" / "python@3.12" / "3.12.4"
    (cellar / "bin").mkdir(parents=True)
    (cellar / "bin" / "python3.12").write_text("")
    (tmp_path / "opt").mkdir()
    (tmp_path / "opt" / "python@3.12").symlink_to(cellar)
    versioned = str(cellar / "bin" / "python3.12")

    assert stable_path(versioned) == str(tmp_path / "opt" / "python@3.12" / "bin" / "python3.12")
    (tmp_path / "opt" / "python@3.12").unlink()  # no opt link: keep what works
    assert stable_path(versioned) == versioned
    assert stable_path("/usr/bin/python3") == "/usr/bin/python3"


def test_exec_argv_writes_the_opt_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tvmaniac_refreshd.service import base  # noqa: PLC0415

    cellar = tmp_path / "Cellar" / "python@3.13" / "3.13.1" / "bin"
    cellar.mkdir(parents=True)
    (cellar / "python3.13").write_text("")
    (tmp_path / "opt").mkdir()
    (tmp_path / "opt" / "python@3.13").symlink_to(cellar.parent)
    monkeypatch.setattr("sys.executable", str(cellar / "python3.13"))

    assert base.exec_argv(None)[0] == str(tmp_path / "opt" / "python@3.13" / "bin" / "python3.13")


class TestLoginItems:
    """Background Task Management: the user switched the agent off in Login Items (item 6)."""

    def _switched_off(self, mac: Mac) -> None:
        table = mac.table
        table["btm_off"] = [DAEMON]
        mac.state_file.write_text(json.dumps(table))

    def test_switched_off_the_job_never_runs_and_status_says_where(self, mac: Mac) -> None:
        self._switched_off(mac)

        code, output = mac.cli("install")

        assert code == 0, output
        assert mac.table["btm_off"] == [DAEMON]  # `enable` did not clear it
        assert mac.loaded() == {DAEMON: "waiting"}
        assert mac.disabled() == []  # and print-disabled is clean
        code, output = mac.cli("status")
        assert "Login Items" in output
        assert "sfltool dumpbtm" in output

    def test_a_refused_bootstrap_points_to_login_items(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        mac = Mac(tmp_path, monkeypatch, btm_bootstrap_code=5)
        self._switched_off(mac)

        code, output = mac.cli("install")

        assert code != 0
        assert "Login Items" in output
        assert "sfltool dumpbtm" in output
        assert "com.apple.xpc.launchd" in output  # launchd's own log


def test_the_user_domain_agent_knows_it_cannot_notify(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The user/UID plist tells the agent it runs outside any session; the gui one does not."""
    from tvmaniac_refreshd.core.launchd_log import in_background_session  # noqa: PLC0415

    mac = Mac(tmp_path, monkeypatch, gui=False)
    assert mac.cli("install")[0] == 0
    background = plistlib.loads(mac.plist(DAEMON).read_bytes())["EnvironmentVariables"]
    assert in_background_session(background)
    assert Launchd(mac.environ, run_command).agent_domain() == USER

    gui = plistlib.loads(launchd_module.render("daemon", ["python"], tmp_path))
    assert not in_background_session(gui["EnvironmentVariables"])
    assert gui["LimitLoadToSessionType"] == "Aqua"  # kept explicit: the default anyway (item 10)


class TestBrewServices:
    """`brew services start tvmaniac-refreshd` loads the formula's agent under Homebrew's own
    label (packaging/homebrew/: homebrew.mxcl.tvmaniac-refreshd); `service` sees it."""

    BREW = "homebrew.mxcl.tvmaniac-refreshd"

    def start(self, mac: Mac) -> None:
        """What `brew services start` does: write its plist, then bootstrap it in gui/UID."""
        plist = mac.plist(self.BREW)
        plist.parent.mkdir(parents=True, exist_ok=True)
        agent = plistlib.loads(launchd_module.render("daemon", exec_argv(None), mac.home / "Logs"))
        agent["Label"] = self.BREW
        plist.write_bytes(plistlib.dumps(agent))
        subprocess.run(["launchctl", "bootstrap", GUI, str(plist)], check=True)

    def test_status_reports_the_brew_services_agent(self, mac: Mac) -> None:
        self.start(mac)

        code, output = mac.cli("status")

        assert code == 0, output
        assert "running" in output
        assert self.BREW in output
        assert "not installed" not in output

    def test_install_beside_it_refuses_instead_of_starting_a_second_daemon(self, mac: Mac) -> None:
        self.start(mac)

        code, output = mac.cli("install")

        assert code != 0
        assert "brew services stop tvmaniac-refreshd" in output
        assert mac.loaded() == {self.BREW: "running"}
        assert not mac.plist(DAEMON).exists()

    def test_uninstall_leaves_it_to_brew_and_says_how(self, mac: Mac) -> None:
        self.start(mac)

        code, output = mac.cli("uninstall")

        assert code == 0
        assert "brew services stop tvmaniac-refreshd" in output
        assert mac.loaded() == {self.BREW: "running"}
