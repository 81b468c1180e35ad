"""Service units: rendered correctly, verified by systemd itself, installed idempotently."""

# Paths under /tmp here are strings that are never opened.
# ruff: noqa: S108
from __future__ import annotations

import configparser
import io
import plistlib
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from tvmaniac_refreshd.core.errors import ServiceUnavailable
from tvmaniac_refreshd.service.base import ServiceMode, exec_argv
from tvmaniac_refreshd.service.launchd import render as render_plist
from tvmaniac_refreshd.service.systemd import (
    UNITS,
    Systemd,
    home_binds,
    private_tmp_binds,
    quote_exec,
    render,
)

ARGV = [sys.executable, "-m", "tvmaniac_refreshd"]
ALL_UNITS = [unit for units in UNITS.values() for unit in units]
DAEMON = "tvmaniac-refreshd.service"


def verify(
    paths: Sequence[Path], tmp_path: Path, scope: str = "--user"
) -> subprocess.CompletedProcess[str]:
    """Run systemd-analyze verify on ``paths`` in ``scope`` ("--user", or "" for system)."""
    return subprocess.run(
        [
            "systemd-analyze",
            *([scope] if scope else []),
            "verify",
            "--man=no",
            "--recursive-errors=no",
            *map(str, paths),
        ],
        capture_output=True,
        text=True,
        env={"XDG_RUNTIME_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
        check=False,
    )


def parse(text: bytes) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(text.decode())
    return parser


class TestSystemdUnits:
    @pytest.mark.parametrize("scope", ["--user", ""])
    def test_systemd_accepts_every_rendered_unit(self, tmp_path: Path, scope: str) -> None:
        """systemd-analyze verify passes with no warning at all, user and system scope (R1)."""
        paths = []
        for unit in ALL_UNITS:
            path = tmp_path / unit
            path.write_bytes(render(unit, ARGV))
            paths.append(path)
        result = verify(paths, tmp_path, scope)

        assert (result.returncode, result.stderr) == (0, "")

    def test_path_with_spaces(self, tmp_path: Path) -> None:
        """An interpreter under a directory with spaces is quoted so that systemd runs it."""
        spaced = tmp_path / "my venv" / "bin"
        spaced.mkdir(parents=True)
        (spaced / "python").symlink_to(sys.executable)
        unit = tmp_path / "tvmaniac-refreshd.service"
        unit.write_bytes(render(unit.name, [str(spaced / "python"), "-m", "tvmaniac_refreshd"]))
        result = verify([unit], tmp_path)

        assert (result.returncode, result.stderr) == (0, "")
        assert f'ExecStart="{spaced}/python" -m tvmaniac_refreshd run' in unit.read_text()

    @pytest.mark.parametrize(
        ("paths", "binds"),
        [
            (["/tmp/ci/.venv/bin/python", "/tmp/ci"], ["/tmp/ci"]),
            (["/var/tmp/try/bin/python"], ["/var/tmp/try"]),
            (["/home/u/.venv/bin/python", "/usr/lib/python3/dist-packages"], []),
            (["/tmp", "/tmpfoo/bin/python", "/tmp/"], []),
            (["/tmp/my venv/bin/python"], []),  # would need quoting: left to fail visibly
        ],
    )
    def test_private_tmp_keeps_an_installation_under_tmp_visible(
        self, paths: list[str], binds: list[str]
    ) -> None:
        assert private_tmp_binds(paths) == binds

    @pytest.mark.parametrize(
        "unit", ["tvmaniac-refreshd.service", "tvmaniac-refreshd-refresh.service"]
    )
    def test_a_unit_for_an_installation_under_tmp_binds_it_back(self, unit: str) -> None:
        text = render(unit, ["/tmp/ci/.venv/bin/python", "-m", "tvmaniac_refreshd"]).decode()

        assert "\nPrivateTmp=yes\nBindReadOnlyPaths=/tmp/ci" in text
        assert text.count("BindReadOnlyPaths=/tmp/ci") == 1

    @pytest.mark.parametrize(
        "unit", ["tvmaniac-refreshd.service", "tvmaniac-refreshd-refresh.service"]
    )
    def test_the_home_is_hidden_but_for_the_installation_and_config(self, unit: str) -> None:
        """ProtectHome=tmpfs: a venv under the home and a --config there are bound back in,
        read-only; nothing else of the home is (issue 24: ~/.ssh was readable)."""
        argv = ["/home/u/.venv/bin/python", "-m", "tvmaniac_refreshd", "--config", "/home/u/c.toml"]
        lines = render(unit, argv, home=Path("/home/u")).decode().splitlines()

        assert "ProtectHome=tmpfs" in lines
        assert "BindReadOnlyPaths=-/home/u/.venv -/home/u/c.toml" in lines
        assert (
            "BindReadOnlyPaths=-%h/.config/tvmaniac-refreshd -%h/.config/python_keyring %t/bus "
            "%t/systemd/notify"
        ) in lines
        assert "BindPaths=-%h/.local/state/tvmaniac-refreshd" in lines
        assert not any(line.startswith("ProtectHome=read-only") for line in lines)

    @pytest.mark.parametrize(
        ("paths", "binds"),
        [
            (["/home/u/.venv", "/home/u/.venv/lib/python3.11/site-packages"], ["/home/u/.venv"]),
            (
                ["/usr", "/home/u/.local/lib/python3.11/site-packages"],
                ["/home/u/.local/lib/python3.11/site-packages"],
            ),
            (["/home/u", "/home/uv/x", "/home/u/my venv"], []),
            (["/home/u/b/c", "/home/u/a", "/home/u/b", "/home/u/a"], ["/home/u/a", "/home/u/b"]),
        ],
    )
    def test_home_binds_name_the_outermost_paths(self, paths: list[str], binds: list[str]) -> None:
        assert home_binds(paths, "/home/u") == binds

    def test_verify_would_catch_an_unknown_key(self, tmp_path: Path) -> None:
        """The check above can fail: an unknown key shows up on stderr."""
        path = tmp_path / "bad.service"
        path.write_text("[Service]\nBogus=1\nExecStart=/bin/true\n")

        assert "Unknown key" in verify([path], tmp_path).stderr

    def test_timer_calendar_is_valid(self) -> None:
        """The timer's OnCalendar= is accepted by systemd-analyze calendar (R9)."""
        timer = parse(render("tvmaniac-refreshd-refresh.timer", ARGV))["Timer"]
        result = subprocess.run(
            ["systemd-analyze", "calendar", timer["OnCalendar"]],
            capture_output=True,
            text=True,
            check=False,
        )

        assert result.returncode == 0
        assert (timer["Persistent"], timer["RandomizedDelaySec"]) == ("true", "15min")

    def test_daemon_unit_semantics(self) -> None:
        """Type=notify, watchdog, restart limits that can be reached, no network target (R2, R3)."""
        unit = parse(render("tvmaniac-refreshd.service", ARGV))
        service = unit["Service"]

        assert (service["Type"], service["NotifyAccess"], service["Restart"]) == (
            "notify",
            "main",
            "on-failure",
        )
        assert service["ExecStart"] == f"{sys.executable} -m tvmaniac_refreshd run"
        # A broken config fails `systemctl reload` itself, before the daemon is signalled.
        reload_lines = [
            line.split("=", 1)[1]
            for line in render("tvmaniac-refreshd.service", ARGV).decode().splitlines()
            if line.startswith("ExecReload=")
        ]
        assert reload_lines == [
            f"{sys.executable} -m tvmaniac_refreshd config check --only-config",
            "/bin/kill -HUP $MAINPID",
        ]
        assert "StartLimitBurst" not in service
        restart = int(service["RestartSec"])
        assert restart * int(unit["Unit"]["StartLimitBurst"]) > 0
        assert (
            restart * int(unit["Unit"]["StartLimitBurst"])
            > int(unit["Unit"]["StartLimitIntervalSec"]) / 5
        )
        for name in ALL_UNITS:
            text = render(name, ARGV).decode()
            assert "network-online.target" not in text
            assert "@EXEC@" not in text
            assert "@README@" not in text

    def test_no_hardening_that_breaks_user_units(self) -> None:
        """PrivateNetwork would cut off the keyring; IP filters need the system manager (R5)."""
        for name in ALL_UNITS:
            text = render(name, ARGV).decode()
            for forbidden in (
                "PrivateNetwork=",
                "IPAddressDeny=",
                "ProtectKernelLogs=",
                "RemoveIPC=",
            ):
                assert forbidden not in text

    def test_namespace_options_come_with_private_users(self) -> None:
        """A user unit applies ProtectHome= and the like only in its own user namespace."""
        for name in ALL_UNITS:
            text = render(name, ARGV).decode()
            if "ProtectHome=" in text:
                assert "\nPrivateUsers=yes\n" in text

    def test_both_services_have_the_same_sandbox(self) -> None:
        """The timer's service writes the same state and locks as the daemon."""

        def sandbox(name: str) -> list[str]:
            text = render(name, ARGV).decode()
            lines = text[text.index("\nPrivateUsers=") :].splitlines()
            return [line for line in lines if line and not line.startswith(("#", "["))]

        daemon, timer = sandbox(UNITS["daemon"][0]), sandbox(UNITS["timer"][0])
        assert [line for line in daemon if line not in timer] == ["WantedBy=default.target"]

    @pytest.mark.parametrize(
        ("argument", "quoted"),
        [
            ("/usr/bin/python3", "/usr/bin/python3"),
            ("/home/a b/venv/bin/python", '"/home/a b/venv/bin/python"'),
            ("/srv/100%/python", "/srv/100%%/python"),
            ("/srv/$HOME/x", '"/srv/$$HOME/x"'),
        ],
    )
    def test_exec_quoting(self, argument: str, quoted: str) -> None:
        """Spaces are quoted and systemd's % and $ expansions are escaped."""

        assert quoted == quote_exec(argument)

    def test_exec_argv_makes_config_absolute(self, tmp_path: Path) -> None:
        """A relative --config is made absolute: the service does not start in this directory."""
        argv = exec_argv("relative.toml")

        assert argv[:3] == ARGV
        assert Path(argv[4]).is_absolute()


class FakeSystemctl:
    """Records commands; answers like a working (or an absent) user manager."""

    def __init__(
        self, *, bus: bool = True, linger: bool = True, shows: dict[str, str] | None = None
    ) -> None:
        self.calls: list[list[str]] = []
        self.bus = bus
        self.linger = linger
        # `systemctl show` answers per unit, as systemd would give them; the rest get a default.
        self.shows = shows or {}

    def __call__(self, argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        self.calls.append(list(argv))
        if argv[0] == "loginctl":
            return subprocess.CompletedProcess(argv, 0, "yes\n" if self.linger else "no\n", "")
        if not self.bus:
            return subprocess.CompletedProcess(
                argv, 1, "", "Failed to connect to bus: No medium found"
            )
        if argv[2:3] == ["show"]:
            out = self.shows.get(
                argv[-1],
                "ActiveState=active\nSubState=running\nResult=success\nStatusText=ok\nNRestarts=0\n",
            )
            return subprocess.CompletedProcess(argv, 0, out, "")
        return subprocess.CompletedProcess(argv, 0, "", "")

    def systemctl(self) -> list[str]:
        return [" ".join(call[2:]) for call in self.calls if call[0] == "systemctl"]


@pytest.fixture
def home(tmp_path: Path) -> dict[str, str]:
    return {"HOME": str(tmp_path), "USER": "tok"}


class TestSystemdInstall:
    def test_install_twice_then_uninstall_twice(self, home: dict[str, str]) -> None:
        """Install and uninstall are idempotent and leave nothing behind (R11)."""
        fake = FakeSystemctl()
        systemd = Systemd(home, fake)
        for _ in range(2):
            systemd.install("daemon", ARGV, dry_run=False, out=io.StringIO())
        assert sorted(path.name for path in systemd.unit_dir.iterdir()) == [
            "tvmaniac-refreshd.service"
        ]
        assert systemd.state().mode == "daemon"
        for _ in range(2):
            systemd.uninstall(dry_run=False, out=io.StringIO())

        assert list(systemd.unit_dir.iterdir()) == []
        assert fake.systemctl().count("enable tvmaniac-refreshd.service") == 2
        assert "disable --now tvmaniac-refreshd.service" in fake.systemctl()
        assert "reset-failed tvmaniac-refreshd.service" in fake.systemctl()
        assert all("sudo" not in call for call in fake.calls)

    def test_switching_modes_replaces_the_other(self, home: dict[str, str]) -> None:
        """Installing the timer removes the daemon unit, after stopping it."""
        fake = FakeSystemctl()
        systemd = Systemd(home, fake)
        systemd.install("daemon", ARGV, dry_run=False, out=io.StringIO())
        systemd.install("timer", ARGV, dry_run=False, out=io.StringIO())

        assert sorted(path.name for path in systemd.unit_dir.iterdir()) == [
            "tvmaniac-refreshd-refresh.service",
            "tvmaniac-refreshd-refresh.timer",
        ]
        commands = fake.systemctl()
        assert commands.index("disable --now tvmaniac-refreshd.service") < commands.index(
            "enable tvmaniac-refreshd-refresh.timer"
        )

    def test_dry_run_changes_nothing(self, home: dict[str, str]) -> None:
        """--dry-run prints the files and commands, and runs and writes nothing."""
        fake = FakeSystemctl()
        systemd = Systemd(home, fake)
        out = io.StringIO()
        systemd.install("timer", ARGV, dry_run=True, out=out)

        assert fake.calls == []
        assert not systemd.unit_dir.exists()
        assert "would write" in out.getvalue()
        assert (
            "would run: systemctl --user enable tvmaniac-refreshd-refresh.timer" in out.getvalue()
        )

    def test_no_user_manager(self, home: dict[str, str]) -> None:
        """Without a user bus, install fails with exit 69 and says what to check."""
        with pytest.raises(ServiceUnavailable, match="XDG_RUNTIME_DIR") as caught:
            Systemd(home, FakeSystemctl(bus=False)).install(
                "daemon", ARGV, dry_run=False, out=io.StringIO()
            )

        assert caught.value.exit_code == 69

    def test_edited_unit_is_replaced_with_a_note(self, home: dict[str, str]) -> None:
        """A unit the user edited is regenerated, and the user is pointed at drop-ins."""
        systemd = Systemd(home, FakeSystemctl())
        systemd.install("daemon", ARGV, dry_run=False, out=io.StringIO())
        unit = systemd.unit_dir / "tvmaniac-refreshd.service"
        unit.write_text(unit.read_text().replace("RestartSec=30", "RestartSec=1"))
        out = io.StringIO()
        systemd.install("daemon", ARGV, dry_run=False, out=out)

        assert "systemctl --user edit tvmaniac-refreshd.service" in out.getvalue()
        assert "RestartSec=30" in unit.read_text()

    def test_lingering_off_is_explained(self, home: dict[str, str]) -> None:
        """Without lingering, the exact loginctl command is printed; sudo is never run."""
        out = io.StringIO()
        Systemd(home, FakeSystemctl(linger=False)).install("daemon", ARGV, dry_run=False, out=out)

        assert "loginctl enable-linger tok" in out.getvalue()
        # polkit lets a user enable their own lingering by default: try that first.
        assert "you may do this yourself" in out.getvalue()

    def test_follow_hint_quotes_the_glob(self, home: dict[str, str]) -> None:
        """An unquoted tvmaniac-refreshd* would be expanded by the shell in a matching folder."""
        out = io.StringIO()
        Systemd(home, FakeSystemctl()).install("timer", ARGV, dry_run=False, out=out)

        assert "journalctl --user -u 'tvmaniac-refreshd*' -f" in out.getvalue()


class UnitFileSystemctl(FakeSystemctl):
    """Also keeps each unit's enablement, as `systemctl --user is-enabled` reports it."""

    def __init__(self) -> None:
        super().__init__()
        self.enabled: set[str] = set()

    def __call__(self, argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        answer = super().__call__(argv)
        verb, units = argv[2], [unit for unit in argv[3:] if not unit.startswith("-")]
        if verb == "enable":
            self.enabled.update(units)
        elif verb == "disable":
            self.enabled.difference_update(units)
        elif verb == "is-enabled":
            state = "enabled" if units[0] in self.enabled else "disabled"
            return subprocess.CompletedProcess(
                argv, 0 if state == "enabled" else 1, state + "\n", ""
            )
        return answer


class TestPackagedUnits:
    """The .deb puts the units in /usr/lib/systemd/user for every user; `service install`
    enables those rather than shadowing them with copies in ~/.config/systemd/user."""

    @pytest.fixture
    def packaged(self, tmp_path: Path) -> Path:
        directory = tmp_path / "usr-lib-systemd-user"
        directory.mkdir()
        for unit in ALL_UNITS:  # what debian/rules makes: this installation's command
            (directory / unit).write_bytes(render(unit, ARGV))
        return directory

    def test_install_enables_the_packaged_unit_and_writes_no_copy(
        self, home: dict[str, str], packaged: Path
    ) -> None:
        fake = UnitFileSystemctl()
        systemd = Systemd(home, fake, packaged_dir=packaged)
        out = io.StringIO()
        systemd.install("daemon", ARGV, dry_run=False, out=out)

        assert not (systemd.unit_dir / "tvmaniac-refreshd.service").exists()
        assert fake.systemctl()[-2:] == [
            "enable tvmaniac-refreshd.service",
            "restart tvmaniac-refreshd.service",
        ]
        assert f"packaged daemon service: tvmaniac-refreshd.service in {packaged}" in (
            out.getvalue()
        )
        state = systemd.state()
        assert (state.mode, state.files) == ("daemon", (str(packaged / DAEMON),))

        systemd.uninstall(dry_run=False, out=io.StringIO())

        assert "disable --now tvmaniac-refreshd.service" in fake.systemctl()
        assert (packaged / DAEMON).exists()  # the package's file, not ours to delete
        assert systemd.state().mode is None

    def test_an_own_copy_that_would_shadow_it_is_removed(
        self, home: dict[str, str], packaged: Path
    ) -> None:
        """A copy from a `service install` made before the package was installed would
        override the packaged unit forever; the install removes it and says so in a dry run."""
        systemd = Systemd(home, UnitFileSystemctl(), packaged_dir=packaged)
        systemd.unit_dir.mkdir(parents=True)
        (systemd.unit_dir / DAEMON).write_bytes(render(DAEMON, ARGV))
        out = io.StringIO()
        systemd.install("daemon", ARGV, dry_run=True, out=out)
        assert "overrides the packaged unit" in out.getvalue()

        fake = UnitFileSystemctl()
        systemd = Systemd(home, fake, packaged_dir=packaged)
        systemd.install("daemon", ARGV, dry_run=False, out=io.StringIO())

        assert not (systemd.unit_dir / DAEMON).exists()
        commands = fake.systemctl()
        assert commands.index(f"disable {DAEMON}") < commands.index(f"enable {DAEMON}")

    def test_another_command_gets_its_own_unit_that_says_it_overrides(
        self, home: dict[str, str], packaged: Path
    ) -> None:
        """With a --config of its own, the user's unit runs another command than the package's:
        it is written to ~/.config/systemd/user, where it overrides the packaged one."""
        fake = UnitFileSystemctl()
        systemd = Systemd(home, fake, packaged_dir=packaged)
        out = io.StringIO()
        argv = [*ARGV, "--config", "/home/tok/other.toml"]
        systemd.install("daemon", argv, dry_run=False, out=out)

        assert b"--config /home/tok/other.toml run" in (systemd.unit_dir / DAEMON).read_bytes()
        assert f"overrides the packaged tvmaniac-refreshd.service in {packaged}" in (out.getvalue())
        assert systemd.state().files == (str(systemd.unit_dir / DAEMON),)


# What `systemctl show` says of the timer and its oneshot at the moments `service status` reports.
TIMER_SHOW = "ActiveState=active\nSubState=waiting\nResult=success\nStatusText=\nNRestarts=0\n"
NEXT = "NextElapseUSecRealtime=Sun 2026-11-29 14:00:00 UTC\n"
NEVER_RAN = "ActiveState=inactive\nResult=success\nExecMainStatus=0\nExecMainExitTimestamp=\n"
FAILED = (
    "ActiveState=failed\nResult=exit-code\nExecMainStatus=75\n"
    "ExecMainExitTimestamp=Sun 2026-11-29 13:01:02 UTC\n"
)


class TestTimerStatus:
    def state(self, home: dict[str, str], oneshot: str) -> str:
        shows = {
            "tvmaniac-refreshd-refresh.timer": TIMER_SHOW + NEXT,
            "tvmaniac-refreshd-refresh.service": oneshot,
        }
        systemd = Systemd(home, FakeSystemctl(shows=shows))
        systemd.install("timer", ARGV, dry_run=False, out=io.StringIO())
        return systemd.state().detail

    def test_never_ran(self, home: dict[str, str]) -> None:
        """Before the first run there is no result to speak of, and "success" would be a lie."""
        detail = self.state(home, NEVER_RAN)

        assert detail == "last run: never ran; next run: Sun 2026-11-29 14:00:00 UTC"

    def test_failed_run_is_reported_with_its_exit_status_and_time(
        self, home: dict[str, str]
    ) -> None:
        detail = self.state(home, FAILED)

        assert detail == (
            "last run: failed (exit status 75, temporary failure, tokens kept) at "
            "Sun 2026-11-29 13:01:02 UTC; next run: Sun 2026-11-29 14:00:00 UTC"
        )


ALLOWED_PLIST_KEYS = {
    "Label": str,
    "ProgramArguments": list,
    "RunAtLoad": bool,
    "KeepAlive": dict,
    "ThrottleInterval": int,
    "ProcessType": str,
    "LowPriorityIO": bool,
    "LimitLoadToSessionType": str,
    "ExitTimeOut": int,
    "EnvironmentVariables": dict,
    "StandardOutPath": str,
    "StandardErrorPath": str,
    "StartCalendarInterval": list,
}


class TestLaunchd:
    @pytest.mark.parametrize("mode", ["daemon", "timer"])
    def test_plist_schema(self, mode: ServiceMode, tmp_path: Path) -> None:
        """The agent plist has only known keys of the right types and absolute paths (R28)."""
        agent = plistlib.loads(render_plist(mode, ARGV, tmp_path / "Logs"))

        for key, value in agent.items():
            assert isinstance(value, ALLOWED_PLIST_KEYS[key]), key
        assert agent["ProgramArguments"][0] == sys.executable
        assert agent["LimitLoadToSessionType"] == "Aqua"
        assert agent["ThrottleInterval"] >= 30
        assert agent["StandardErrorPath"] == str(tmp_path / "Logs" / "stderr.log")
        assert "NetworkState" not in str(agent)
        # Hooks named by bare command: Homebrew's bin directories (Apple silicon, Intel).
        path = agent["EnvironmentVariables"]["PATH"].split(":")
        assert path[:2] == ["/opt/homebrew/bin", "/usr/local/bin"]
        assert agent["EnvironmentVariables"]["TVMANIAC_REFRESHD_SUPERVISOR"] == "launchd"
