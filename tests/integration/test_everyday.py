"""Everyday use through the real command: first run, options, accounts, output, exit codes.

Each test runs `python -m tvmaniac_refreshd` against the Trakt emulator and a private
gnome-keyring, and checks what a user sees: stdout, stderr and the exit code.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.harness import CLIENT_ID, CLIENT_SECRET, REPO, Harness, Run
from tvmaniac_refreshd import __version__
from tvmaniac_refreshd.service.base import systemd_booted

LIFETIME = 604800


def two_accounts(harness: Harness, head: str = "") -> None:
    """Accounts `work` and `home` (no `default`), both at the emulator."""
    tables = "".join(
        f"[accounts.{name}]\n"
        'provider = "trakt"\n'
        f'client_id = "{CLIENT_ID}"\n'
        f'client_secret = "{CLIENT_SECRET}"\n'
        f'auth_url = "{harness.emulator.url}"\n'
        f'api_url = "{harness.emulator.url}"\n'
        for name in ("work", "home")
    )
    harness.write_config(head + tables)


class Terminal:
    """The command with stdout and stderr on a pseudo-terminal, read as a person would see it."""

    def __init__(self, harness: Harness, *args: str, env: dict[str, str] | None = None) -> None:
        self.master, slave = pty.openpty()
        self.process = subprocess.Popen(
            harness.command(*args),
            stdin=subprocess.DEVNULL,
            stdout=slave,
            stderr=slave,
            env=env or harness.env(),
        )
        os.close(slave)
        self.seen = b""
        self.harness = harness
        self.args = args

    def read_until(self, pattern: str, timeout: float = 30) -> str:
        """Read until ``pattern`` (a regex) appears; bounded, never a fixed sleep."""
        while not re.search(pattern, self.seen.decode(errors="replace")):
            ready, _, _ = select.select([self.master], [], [], timeout)
            assert ready, f"no {pattern!r} on the terminal; saw {self.seen!r}"
            try:
                chunk = os.read(self.master, 4096)
            except OSError:  # EIO: the other side closed
                chunk = b""
            assert chunk, f"the terminal closed before {pattern!r}; saw {self.seen!r}"
            self.seen += chunk
        return self.seen.decode(errors="replace")

    def finish(self, timeout: float = 30) -> tuple[int, str]:
        code = self.process.wait(timeout=timeout)
        while True:
            ready, _, _ = select.select([self.master], [], [], 0)
            if not ready:
                break
            try:
                chunk = os.read(self.master, 4096)
            except OSError:
                break
            if not chunk:
                break
            self.seen += chunk
        os.close(self.master)
        text = self.seen.decode(errors="replace")
        self.harness.transcript.append(Run(self.args, code, text, ""))
        return code, text


class TestFirstRun:
    def test_no_config_names_config_init(self, harness: Harness, tmp_path: Path) -> None:
        """login, status and token without a config: 78, and the way out is `config init`."""
        env = harness.env(TVMANIAC_REFRESHD_CONFIG=str(tmp_path / "none.toml"))
        for verb in ("login", "status", "token"):
            run = harness.run(verb, env=env)

            assert run.code == 78, (verb, run.err)
            assert "create it with `tvmaniac-refreshd config init`" in run.err, verb
            assert "config/refreshd.example.toml" not in run.err

    def test_config_init_writes_a_private_starter_once(
        self, harness: Harness, tmp_path: Path
    ) -> None:
        """0600, what to do next, and a second run leaves the file alone (exit 1)."""
        path = tmp_path / "new" / "config.toml"
        env = harness.env(TVMANIAC_REFRESHD_CONFIG=str(path))
        run = harness.run("config", "init", "--client-id", "my-app-id", env=env)

        assert (run.code, run.err) == (0, "")
        assert run.out == (
            f"Wrote {path} (readable only by you).\n"
            "Next:\n"
            "  tvmaniac-refreshd config set-secret   # the client secret, kept in the keyring\n"
            "  tvmaniac-refreshd login\n"
        )
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert 'client_id = "my-app-id"' in path.read_text()
        before = path.read_bytes()

        again = harness.run("config", "init", "--client-id", "other", env=env)

        assert again.code == 1
        assert again.err == (
            f"tvmaniac-refreshd: {path} already exists; it was left as it is. Check it with "
            "`tvmaniac-refreshd config check`, or move it away first\n"
        )
        assert path.read_bytes() == before

    def test_config_init_off_a_terminal_needs_the_client_id(
        self, harness: Harness, tmp_path: Path
    ) -> None:
        """Nobody to ask: a usage error that says which option, and no file."""
        path = tmp_path / "config.toml"
        run = harness.run("config", "init", env=harness.env(TVMANIAC_REFRESHD_CONFIG=str(path)))

        assert run.code == 2
        assert "pass --client-id ID" in run.err
        assert not path.exists()

    def test_config_example_prints_the_shipped_example(self, harness: Harness) -> None:
        run = harness.run("config", "example")

        assert run.code == 0
        assert run.out == (REPO / "config" / "refreshd.example.toml").read_text()


class TestClientSecret:
    def config_without_secret(self, harness: Harness) -> None:
        harness.write_config(
            harness.config_path.read_text().replace(f'client_secret = "{CLIENT_SECRET}"\n', "")
        )

    def test_login_stops_before_a_code_is_requested(self, harness: Harness) -> None:
        """78, naming `config set-secret`, and no device code was asked for."""
        self.config_without_secret(harness)
        run = harness.run("login")

        assert run.code == 78
        assert "no client secret" in run.err
        assert "`tvmaniac-refreshd config set-secret --account default`" in run.err
        assert "enter the code" not in run.out
        assert harness.emulator.requests("/oauth/device/code") == []

    def test_config_check_warns(self, harness: Harness) -> None:
        self.config_without_secret(harness)
        run = harness.run("config", "check")

        assert run.code == 0, run.out
        assert (
            "warn account default: no client secret: `login` and refreshes will be refused; "
            "store it with `tvmaniac-refreshd config set-secret --account default`"
        ) in run.out

    def test_a_secret_in_the_keyring_is_enough(self, harness: Harness) -> None:
        self.config_without_secret(harness)
        stored = harness.run("config", "set-secret", stdin=CLIENT_SECRET + "\n")
        run = harness.run("config", "check")

        assert stored.code == 0
        assert "no client secret" not in run.out
        assert "client secret from the keyring" in run.out


class TestGlobalOptions:
    def test_options_after_the_verb(self, harness: Harness) -> None:
        """--config, --account and -v work after the verb as before it."""
        grant = harness.seed()
        env = harness.env(TVMANIAC_REFRESHD_CONFIG="/nonexistent/config.toml")
        config = str(harness.config_path)
        after = harness.run("token", "--account", "default", "--config", config, env=env)
        before = harness.run("--config", config, "--account", "default", "token", env=env)
        status = harness.run("status", "--config", config, "-v", env=env)

        assert (after.code, after.out) == (0, f"{grant['access_token']}\n")
        assert (before.code, before.out) == (0, f"{grant['access_token']}\n")
        assert status.code == 0, status.err
        assert "default: active" in status.out

    def test_version_and_help(self, harness: Harness) -> None:
        """-V prints the version; no arguments print the help and exit 0."""
        for flag in ("-V", "--version"):
            run = harness.run(flag)
            assert (run.code, run.out) == (0, f"tvmaniac-refreshd {__version__}\n")
        bare = harness.run()

        assert bare.code == 0
        assert bare.out.startswith("usage: tvmaniac-refreshd")
        assert "config init" in bare.out
        assert bare.err == ""


class TestAccounts:
    def test_several_accounts_without_a_choice_is_a_usage_error(self, harness: Harness) -> None:
        """token, login and refresh: exit 2 with the accounts; nothing is requested."""
        two_accounts(harness)
        for verb in ("token", "login", "refresh"):
            run = harness.run(verb)

            assert run.code == 2, (verb, run.err)
            assert run.err == (
                "tvmaniac-refreshd: several accounts: pass --account NAME (home, work)\n"
            )
        assert harness.emulator.counters()["requests"] == 0

    def test_the_environment_and_default_account_choose(self, harness: Harness) -> None:
        """$TVMANIAC_REFRESHD_ACCOUNT, then default_account; --account beats both."""
        two_accounts(harness, 'default_account = "home"\n')
        by_default = harness.run("refresh")
        by_env = harness.run("refresh", env=harness.env(TVMANIAC_REFRESHD_ACCOUNT="work"))
        by_option = harness.run(
            "refresh", "--account", "home", env=harness.env(TVMANIAC_REFRESHD_ACCOUNT="work")
        )

        # Not logged in: 77, and the message names the account that was chosen.
        assert (by_default.code, by_env.code, by_option.code) == (77, 77, 77)
        assert "account 'home'" in by_default.err
        assert "account 'work'" in by_env.err
        assert "account 'home'" in by_option.err

    def test_refresh_all_takes_every_account(self, harness: Harness) -> None:
        two_accounts(harness)
        run = harness.run("refresh", "--all")

        assert run.code == 0, run.err
        assert run.out == "work: not logged in; skipped\nhome: not logged in; skipped\n"

    def test_unknown_account_is_a_usage_error(self, harness: Harness) -> None:
        run = harness.run("token", "--account", "nope")

        assert run.code == 2
        assert "no account named 'nope'" in run.err
        assert "(configured: default)" in run.err


class TestOutput:
    def test_login_prints_its_summary_and_no_log_record(self, harness: Harness) -> None:
        """Off a terminal: the URL, the code, the summary; stderr empty; -v adds records."""
        harness.emulator.configure(auto_approve_after_polls=1)
        run = harness.run("login")

        assert run.code == 0, run.err
        assert run.err == ""
        assert "Logged in as 'demo': account 'default' is stored in the keyring" in run.out
        assert "login.finished" not in run.out + run.err
        assert "timestamp=" not in run.out + run.err

        refresh = harness.run("refresh", "--force")
        verbose = harness.run("refresh", "--force", "-v")

        assert (refresh.code, refresh.err) == (0, "")
        assert refresh.out.startswith("default: refreshed; expires ")
        assert verbose.code == 0
        assert "event=refresh.finished" in verbose.err

    def test_status_shows_local_time_with_the_zone(self, harness: Harness) -> None:
        harness.seed()
        run = harness.run("status", env=harness.env(TZ="Asia/Tokyo"))
        utc = harness.run("status", env=harness.env(TZ="UTC"))

        assert run.code == 0
        assert re.search(r"access token expires: \d{4}-\d\d-\d\d \d\d:\d\d JST \(in ", run.out)
        assert re.search(r"access token expires: .* UTC \(in ", utc.out)

    def test_run_on_a_terminal_has_no_priority_prefix(self, harness: Harness) -> None:
        """journald's <6> prefixes are for a captured stream, not for a person."""
        harness.seed()
        terminal = Terminal(harness, "run")
        seen = terminal.read_until(r"daemon\.ready")
        terminal.process.send_signal(signal.SIGTERM)
        code, seen = terminal.finish()

        assert code == 0
        assert "<6>" not in seen
        assert "\x1b[" not in seen  # no colour codes either

    def test_ctrl_c_during_login_leaves_the_countdown_line(self, harness: Harness) -> None:
        """The interruption message starts on a line of its own."""
        env = harness.env()
        env.pop("NO_COLOR", None)
        terminal = Terminal(harness, "login", env=env)
        terminal.read_until(r"Waiting for approval\.\.\. .* left ")
        terminal.process.send_signal(signal.SIGINT)
        code, seen = terminal.finish()

        assert code == 130
        assert re.search(r"left \r?\ntvmaniac-refreshd: interrupted", seen), seen
        assert "\x1b[" not in seen  # the QR code and the countdown use no colour codes

    def test_config_check_warns_once_about_a_readable_secret(self, harness: Harness) -> None:
        harness.config_path.chmod(0o644)
        run = harness.run("config", "check")

        assert (run.out + run.err).count("other users can read it") == 1


class TestMinValid:
    def test_longer_than_the_lifetime_is_refused_without_a_refresh(self, harness: Harness) -> None:
        """2-hour tokens, --min-valid 3h: exit 2 every time, and no refresh token spent."""
        harness.seed(expires_in=7200)
        runs = [harness.run("token", "--min-valid", "3h") for _ in range(2)]

        for run in runs:
            assert (run.code, run.out) == (2, "")
            assert run.err == (
                "tvmaniac-refreshd: --min-valid 3h cannot be met: the provider issues tokens "
                "valid for 2h; ask for at most that\n"
            )
        assert harness.emulator.requests("/oauth/token") == []

    def test_within_the_lifetime_refreshes_once(self, harness: Harness) -> None:
        harness.seed(expires_in=7200, age=3600)
        first = harness.run("token", "--min-valid", "90m")
        second = harness.run("token", "--min-valid", "90m")

        assert (first.code, second.code) == (0, 0)
        assert first.out == second.out
        assert len(harness.emulator.requests("/oauth/token")) == 1


class TestHealthCheck:
    def test_status_check(self, harness: Harness) -> None:
        """77 while logged out, 0 once logged in, 77 again after a rejection."""
        logged_out = harness.run("status", "--check")
        harness.seed()
        fine = harness.run("status", "--check")
        harness.emulator.revoke_grant("alice")
        harness.emulator.advance_clock(LIFETIME)
        harness.run("refresh", "--force")
        rejected = harness.run("status", "--check")

        assert logged_out.code == 77
        assert logged_out.err == "tvmaniac-refreshd: needs `login`: default\n"
        assert (fine.code, fine.err) == (0, "")
        assert rejected.code == 77
        assert rejected.out == ""  # quiet unless -v (issue 25)
        assert "default: reauth_required" in harness.run("-v", "status", "--check").out


class TestServiceWithoutUserManager:
    """A session bus (the private keyring's) but no systemd user manager behind it."""

    def env(self, harness: Harness, tmp_path: Path) -> dict[str, str]:
        return harness.env(XDG_CONFIG_HOME=str(tmp_path / "xdg"))

    def unit_dir(self, tmp_path: Path) -> Path:
        return tmp_path / "xdg" / "systemd" / "user"

    @pytest.mark.skipif(not sys.platform.startswith("linux"), reason="systemd is Linux's")
    def test_install_says_what_is_missing_and_leaves_nothing(
        self, harness: Harness, tmp_path: Path
    ) -> None:
        run = harness.run("service", "install", env=self.env(harness, tmp_path))

        assert run.code == 69, run.err
        # Either way, it says that no systemd user manager runs (issue 25: and why, if systemd
        # is not PID 1 here).
        assert "no systemd user manager" in run.err
        assert not self.unit_dir(tmp_path).exists() or not any(self.unit_dir(tmp_path).iterdir())

    @pytest.mark.skipif(not sys.platform.startswith("linux"), reason="systemd is Linux's")
    def test_status_json_carries_the_error(self, harness: Harness, tmp_path: Path) -> None:
        """A unit left from elsewhere, no manager to ask: JSON anyway, and exit 69."""
        unit_dir = self.unit_dir(tmp_path)
        unit_dir.mkdir(parents=True)
        (unit_dir / "tvmaniac-refreshd.service").write_text("[Service]\n")
        env = self.env(harness, tmp_path)
        run = harness.run("service", "status", "--json", env=env)
        text = harness.run("service", "status", env=env)

        assert run.code == 69
        report = json.loads(run.out)
        assert report["format_version"] == 1
        assert report["installed"] is None
        assert "no systemd user manager" in report["error"]
        assert text.code == 69
        assert "no systemd user manager" in text.err

    def test_status_with_nothing_installed(self, harness: Harness, tmp_path: Path) -> None:
        run = harness.run("service", "status", env=self.env(harness, tmp_path))

        assert run.code == 0
        first = run.out.splitlines()[0]
        if systemd_booted():
            assert first.endswith(
                ": not installed (`tvmaniac-refreshd service install` sets it up)"
            )
        else:  # nothing to recommend installing (issue 25, item 14)
            assert first == "systemd: not running as the service manager"
        assert "not installed; not installed" not in run.out
