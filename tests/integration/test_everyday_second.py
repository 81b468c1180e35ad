"""Everyday use, second round (issue 25), through the real command against the emulator and a
private gnome-keyring: a try-out that keeps the real login, hints that work as printed, and one
voice on the terminal."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import shlex
import signal
import subprocess
import sys
import termios
import threading
from pathlib import Path

import pytest

from tests.integration.test_everyday import Terminal
from tests.support.harness import CLIENT_ID, CLIENT_SECRET, REPO, Harness, Run, wait_until
from tests.support.keyring_session import KeyringSession, processes_with_home
from tests.support.kr_ctl import KeyringControlError
from trakt_emulator import Emulator
from tvmaniac_refreshd.service.base import systemd_booted

OTHER_CLIENT = "try-out-client"
OTHER_SECRET = "try-out-secret-0123456789"


def account_table(
    name: str, url: str, *, client: str = CLIENT_ID, secret: str = CLIENT_SECRET
) -> str:
    return (
        f"[accounts.{name}]\n"
        'provider = "trakt"\n'
        f'client_id = "{client}"\n'
        f'client_secret = "{secret}"\n'
        f'auth_url = "{url}"\n'
        f'api_url = "{url}"\n'
    )


def no_config_env(harness: Harness) -> dict[str, str]:
    """The harness's environment without $TVMANIAC_REFRESHD_CONFIG: --config says which."""
    env = harness.env()
    env.pop("TVMANIAC_REFRESHD_CONFIG")
    return env


def suggested(text: str) -> list[list[str]]:
    """Every command in backquotes that starts with the program's name, as argv words."""
    return [shlex.split(found) for found in re.findall(r"`(tvmaniac-refreshd [^`]*)`", text)]


def login(harness: Harness, *args: str, env: dict[str, str] | None = None) -> None:
    harness.emulator.configure(auto_approve_after_polls=0)
    run = harness.run(*args, "login", env=env)
    assert run.code == 0, run.err


class TestAnotherClientsLogin:
    """Item 1: a config pointed at another client or server never silently ends a login."""

    def other_config(self, harness: Harness) -> Path:
        harness.emulator.add_client(OTHER_CLIENT, OTHER_SECRET)
        path = harness.root / "try.toml"
        path.write_text(
            account_table("default", harness.emulator.url, client=OTHER_CLIENT, secret=OTHER_SECRET)
        )
        path.chmod(0o600)
        return path

    def test_login_refuses_and_names_the_owner(self, harness: Harness) -> None:
        login(harness)
        before = harness.item_text("default")
        codes = len(harness.emulator.requests("/oauth/device/code"))
        other = self.other_config(harness)

        run = harness.run("login", env=harness.env(TVMANIAC_REFRESHD_CONFIG=str(other)))

        assert (run.code, run.out) == (1, "")
        assert run.err == (
            "tvmaniac-refreshd: the stored login of 'default' was made for client "
            f"'{CLIENT_ID}' at {harness.emulator.url}, but the config names client "
            f"'{OTHER_CLIENT}' at {harness.emulator.url}; it was left as it is. To log in with "
            "this config, point the config back at it, give this config another account "
            "name, or run `tvmaniac-refreshd --account default login --replace` to replace "
            "that login\n"
        )
        assert harness.item_text("default") == before
        assert len(harness.emulator.requests("/oauth/device/code")) == codes  # nothing asked
        assert harness.run("token").code == 0  # the real login still works

    def test_replace_replaces_it(self, harness: Harness) -> None:
        login(harness)
        other = self.other_config(harness)
        env = harness.env(TVMANIAC_REFRESHD_CONFIG=str(other))

        run = harness.run("login", "--replace", env=env)

        assert run.code == 0, run.err
        assert run.err == (
            "tvmaniac-refreshd: warning: account 'default' is already logged in; if this login "
            "succeeds, it replaces that one\n"
        )
        assert harness.run("token", env=env).code == 0
        stored = json.loads(harness.item_text("default") or "{}")
        assert (stored["client_id"], stored["endpoint"]) == (OTHER_CLIENT, harness.emulator.url)

    def test_an_account_name_of_its_own_keeps_both(self, harness: Harness) -> None:
        """The README's try-out: its own config file and account name."""
        login(harness)
        harness.emulator.add_client(OTHER_CLIENT, OTHER_SECRET)
        path = harness.root / "try.toml"
        path.write_text(
            account_table("try", harness.emulator.url, client=OTHER_CLIENT, secret=OTHER_SECRET)
        )
        path.chmod(0o600)
        env = harness.env(TVMANIAC_REFRESHD_CONFIG=str(path))

        run = harness.run("login", env=env)

        assert (run.code, run.err) == (0, "")
        assert harness.run("token").code == 0
        assert harness.run("token", env=env).code == 0


class TestLoginForAnotherClient:
    """Item 2: a login that no longer matches the config is named as such, everywhere."""

    def mismatched(self, harness: Harness) -> str:
        login(harness)
        harness.emulator.add_client(OTHER_CLIENT, OTHER_SECRET)
        harness.write_config(
            account_table("default", harness.emulator.url, client=OTHER_CLIENT, secret=OTHER_SECRET)
        )
        return (
            f"the stored login of 'default' was made for client '{CLIENT_ID}' at "
            f"{harness.emulator.url}, but the config names client '{OTHER_CLIENT}' at "
            f"{harness.emulator.url}"
        )

    def test_config_check_fails_and_names_it(self, harness: Harness) -> None:
        sentence = self.mismatched(harness)

        run = harness.run("config", "check")

        assert run.code == 77
        lines = [line for line in run.out.splitlines() if line.startswith("FAIL account default")]
        assert lines == [
            f"FAIL account default: {harness.emulator.url}; client secret from the config file; "
            f"{sentence}. To use this config, point the config back at it, give this config "
            "another account name, or run `tvmaniac-refreshd --account default login --replace` "
            "to replace that login"
        ]
        assert "logged in" not in run.out.replace("logged in; if", "")

    def test_status_does_not_blame_the_provider(self, harness: Harness) -> None:
        sentence = self.mismatched(harness)

        run = harness.run("status", "--json")

        assert run.code == 0
        report = json.loads(run.out)["accounts"][0]
        assert report["state"] == "reauth_required"
        assert report["reauth_reason"] == sentence
        assert report["advice"].startswith("Nothing was sent. To use this config, point")
        text = harness.run("status").out
        assert "no longer accepts" not in text
        assert sentence in text

    def test_token_and_logout_name_it(self, harness: Harness) -> None:
        sentence = self.mismatched(harness)

        token = harness.run("token")
        logout = harness.run("logout")

        assert token.code == 77
        assert sentence in token.err
        assert logout.code == 1  # not 2: nothing is wrong with the command line
        assert logout.err == (
            f"tvmaniac-refreshd: {sentence}; nothing was sent and nothing deleted. Point the "
            "config back at it to revoke it, or run `tvmaniac-refreshd logout --local` to "
            "delete it from the keyring only\n"
        )


class TestRefreshAllSkipsLoggedOut:
    """Item 3: one rule for `refresh --all`, whatever the number of accounts."""

    def test_one_logged_out_account(self, harness: Harness) -> None:
        run = harness.run("refresh", "--all")

        assert (run.code, run.out, run.err) == (0, "default: not logged in; skipped\n", "")

    def test_two_logged_out_accounts(self, harness: Harness) -> None:
        url = harness.emulator.url
        harness.write_config(account_table("work", url) + account_table("home", url))

        run = harness.run("refresh", "--all")

        assert (run.code, run.err) == (0, "")
        assert run.out == "work: not logged in; skipped\nhome: not logged in; skipped\n"

    def test_a_named_logged_out_account_still_needs_login(self, harness: Harness) -> None:
        run = harness.run("refresh")

        assert run.code == 77
        assert "not logged in" in run.err

    def test_a_rejected_session_still_fails_the_timer(self, harness: Harness) -> None:
        harness.seed()
        harness.emulator.revoke_grant("alice")

        run = harness.run("refresh", "--all", "--force")

        assert run.code == 77


# Runs the command in a private mount namespace where the state directory turns read-only once
# the test says so (the device code has been shown), then tells the test it has.
_READ_ONLY_LATER = """\
set -eu
state=$1 go=$2 done=$3; shift 3
mount --bind "$state" "$state"
( while [ ! -e "$go" ]; do sleep 0.05; done
  mount -o remount,bind,ro "$state" && touch "$done" ) &
"$@"
"""


_READ_ONLY_NOW = """\
set -eu
state=$1; shift
mount --bind "$state" "$state"
mount -o remount,bind,ro "$state"
"$@"
"""


class TestLoginWithUnwritableState:
    """Item 4: a state directory that cannot be written is found before the device flow; one
    that turns read-only during it ends the login with what happened, never an internal error
    or a "try again" that hides that the provider approved it."""

    def test_checked_before_the_device_flow(self, harness: Harness) -> None:
        state = harness.state_dir
        state.mkdir(mode=0o700, parents=True, exist_ok=True)
        prefix = ["unshare", "--mount", "--propagation", "private", "sh", "-c"]
        prefix += [_READ_ONLY_NOW, "sh", str(state)]

        run = harness.run("login", prefix=prefix, timeout=120)

        assert run.code == 75, run.err
        assert run.out == ""
        assert str(state) in run.err
        assert harness.emulator.requests("/oauth/device/code") == []  # nothing asked
        assert harness.item_text("default") is None

    def test_read_only_during_the_device_flow(self, harness: Harness) -> None:
        state = harness.state_dir
        state.mkdir(mode=0o700, parents=True, exist_ok=True)
        go, done = harness.root / "go", harness.root / "done"
        prefix = ["unshare", "--mount", "--propagation", "private", "sh", "-c"]
        prefix += [_READ_ONLY_LATER, "sh", str(state), str(go), str(done)]

        def approve_once_read_only() -> None:
            try:
                code = harness.emulator.wait_for_user_code(timeout=60)
            except TimeoutError:  # the login never asked: the assertions below say why
                return
            go.touch()
            for _ in range(1200):  # a bounded poll for the remount, not a wait for time
                if done.exists():
                    break
                threading.Event().wait(0.05)
            harness.emulator.approve(code)

        helper = threading.Thread(target=approve_once_read_only, daemon=True)
        helper.start()
        run = harness.run("login", prefix=prefix, timeout=120)
        helper.join(30)

        assert done.exists()
        assert run.code == 75, run.err
        assert "internal error" not in run.err
        assert run.err.startswith(
            "tvmaniac-refreshd: the login of 'default' was approved, but nothing was stored: "
            "cannot write the state directory"
        )
        assert str(state) in run.err


class TestHintsWorkAsPrinted:
    """Item 5: every suggested command repeats the --config and --account that were passed."""

    def two_accounts(self, harness: Harness) -> Path:
        url = harness.emulator.url
        path = harness.root / "two.toml"
        path.write_text(account_table("work", url) + account_table("home", url))
        path.chmod(0o600)
        return path

    def test_status_with_two_accounts(self, harness: Harness) -> None:
        path = self.two_accounts(harness)
        env = no_config_env(harness)

        run = harness.run("--config", str(path), "status", env=env)

        assert run.code == 0
        advice = [line.strip() for line in run.out.splitlines() if "Not logged in" in line]
        assert advice == [
            f"Not logged in. Run `tvmaniac-refreshd --config {path} --account work login`.",
            f"Not logged in. Run `tvmaniac-refreshd --config {path} --account home login`.",
        ]
        # Followed as printed, the first one logs in `work` of that config.
        harness.emulator.configure(auto_approve_after_polls=0)
        command = suggested(advice[0])[0]
        followed = harness.run(*command[1:], env=env)
        assert followed.code == 0, followed.err
        after = harness.run("--config", str(path), "status", "--json", env=env)
        states = {a["name"]: a["state"] for a in json.loads(after.out)["accounts"]}
        assert states == {"work": "active", "home": "logged_out"}

    def test_token_of_a_named_account(self, harness: Harness) -> None:
        path = self.two_accounts(harness)
        run = harness.run(
            "--config", str(path), "--account", "home", "token", env=no_config_env(harness)
        )

        assert run.code == 77
        assert suggested(run.err) == [
            ["tvmaniac-refreshd", "--config", str(path), "--account", "home", "login"]
        ]

    def test_a_missing_config_file(self, harness: Harness) -> None:
        path = harness.root / "elsewhere" / "config.toml"
        run = harness.run("--config", str(path), "status", env=no_config_env(harness))

        assert run.code == 78
        assert suggested(run.err) == [
            ["tvmaniac-refreshd", "--config", str(path), "config", "init"]
        ]

    def test_git_credential_names_the_account(self, harness: Harness, emulator: Emulator) -> None:
        url = harness.emulator.url
        path = harness.root / "git.toml"
        path.write_text(
            account_table("default", url) + "[accounts.gitlab]\n"
            'provider = "oauth2"\n'
            'client_id = "git-client"\n'
            'client_auth = "none"\n'
            f'token_url = "{url}/oauth/token"\n'
            f'device_authorization_url = "{url}/oauth/device/code"\n'
            'git_host = ["gitlab.example.com"]\n'
        )
        path.chmod(0o600)
        run = harness.run(
            "--config",
            str(path),
            "git-credential",
            "get",
            stdin="protocol=https\nhost=gitlab.example.com\n\n",
            env=no_config_env(harness),
        )

        assert run.out == ""
        assert suggested(run.err) == [
            ["tvmaniac-refreshd", "--config", str(path), "--account", "gitlab", "login"]
        ]


class TestOneVoice:
    """Item 10: without -v, no log record on stderr: only the command's own sentence."""

    def test_refresh_of_a_revoked_grant(self, harness: Harness) -> None:
        harness.seed()
        harness.emulator.revoke_grant("alice")

        run = harness.run("refresh", "--force")

        assert run.code == 77
        assert len(run.err.splitlines()) == 1, run.err
        assert "refresh.finished" not in run.err
        assert run.err.startswith("tvmaniac-refreshd: ")
        harness.seed(user="bob")
        harness.emulator.revoke_grant("bob")
        verbose = harness.run("-v", "refresh", "--force")
        assert "refresh.finished" in verbose.err  # -v still shows the records


class TestTimes:
    """Item 11: people read local time with its zone; JSON and the journal carry ISO 8601."""

    LOCAL = r"\d{4}-\d\d-\d\d \d\d:\d\d CET"  # December in Berlin

    def test_refresh_shows_local_time(self, harness: Harness) -> None:
        harness.seed(age=0.9 * 604800)
        env = harness.env(TZ="Europe/Berlin")

        run = harness.run("refresh", env=env)

        assert run.code == 0, run.err
        assert re.fullmatch(
            rf"default: refreshed; expires {self.LOCAL}, next refresh due {self.LOCAL} "
            r"\(in \d+d \d+h\)\n",
            run.out,
        ), run.out

    def test_run_on_a_terminal_shows_local_time(self, harness: Harness) -> None:
        harness.seed()
        terminal = Terminal(harness, "run", env=harness.env(TZ="Europe/Berlin"))
        seen = terminal.read_until(r"daemon\.ready")
        terminal.process.send_signal(signal.SIGTERM)
        code, seen = terminal.finish()

        planned = [line for line in seen.splitlines() if "daemon.planned" in line]
        assert code == 0
        assert planned, seen
        assert planned[0].startswith(tuple("0123456789")), planned[0]
        assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d CET ", planned[0]), planned[0]
        assert re.search(rf"next_attempt_at=.?{self.LOCAL}", planned[0]), planned[0]
        assert not re.search(r"_at=\d{9,}", seen), seen

    def test_a_captured_stream_gets_iso_8601(self, harness: Harness) -> None:
        harness.seed()
        process = harness.spawn("run")
        wait_until(lambda: harness.run("status", "--json").out.count('"running": true'), timeout=60)
        process.send_signal(signal.SIGTERM)
        run = harness.finish(process, ("run",))

        planned = [line for line in run.err.splitlines() if "daemon.planned" in line]
        assert planned, run.err
        assert re.search(r"next_attempt_at=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", planned[0])


def test_one_place_to_create_a_trakt_app(harness: Harness, tmp_path: Path) -> None:
    """Item 12: `config init`, its help, `login --browser` and the guide name the same page."""
    page = "https://app.trakt.tv/settings/apps"
    init = harness.run(
        "config", "init", env=harness.env(TVMANIAC_REFRESHD_CONFIG=str(tmp_path / "n"))
    )
    browser = harness.run("login", "--browser")
    helped = harness.run("config", "init", "--help")

    assert (init.code, browser.code) == (2, 2)
    assert page in init.err
    assert page in browser.err
    assert page in helped.out
    assert page in (REPO / "docs" / "guide" / "first-run.md").read_text()
    everything = "".join(
        path.read_text()
        for path in [*REPO.glob("tvmaniac_refreshd/**/*.py"), *REPO.glob("docs/**/*.md")]
    )
    assert "trakt.tv/oauth/apps" not in everything
    assert "Your API Apps" not in everything


def unlocked(session: KeyringSession) -> bool:
    """Whether the collection is unlocked; False while the new daemon takes over the bus name."""
    try:
        return not session.is_locked()
    except KeyringControlError:
        return False


class TestKeyringLocked:
    """Item 13: a short sentence, then the recipe that fits this machine, indented."""

    def test_headless_and_no_daemon(self, harness: Harness) -> None:
        harness.seed()
        harness.keyring.lock()
        env = harness.env()
        for variable in ("DISPLAY", "WAYLAND_DISPLAY"):
            env.pop(variable, None)
        try:
            run = harness.run("token", env=env)
        finally:
            harness.keyring.unlock()

        assert run.code == 69
        first, *rest = run.err.splitlines()
        # The Secret Service's owner is named when it can be found.
        assert first in (
            "tvmaniac-refreshd: the keyring is locked; unlock it from a shell (ssh is fine):",
            "tvmaniac-refreshd: the keyring is locked (gnome-keyring); unlock it from a shell "
            "(ssh is fine):",
        )
        assert "  then run the command again." in rest
        assert all(line.startswith("  ") for line in rest), rest
        assert max(len(line) for line in run.err.splitlines()) <= 100
        recipe = [line.strip() for line in rest if line.startswith("    ")]
        if systemd_booted():
            assert recipe[0].startswith("systemctl --user stop gnome-keyring-daemon.socket")
        else:
            assert recipe == [
                "read -rs PW",
                'printf %s "$PW" | gnome-keyring-daemon --replace --unlock --components=secrets',
                "unset PW",
            ]
            assert "systemctl" not in run.err
        assert "daemon recovers" not in run.err

    def test_the_printed_recipe_unlocks_it(self, emulator: Emulator, tmp_path: Path) -> None:
        """Followed as printed (the password on stdin, as `read` takes it), in a session of its
        own: the recipe replaces that session's gnome-keyring-daemon."""
        if systemd_booted():
            pytest.skip("the systemd recipe is run by test_headless_reboot in a real systemd")
        with KeyringSession() as session:
            rig = Harness(emulator=emulator, keyring=session, root=tmp_path)
            rig.seed()
            session.lock()
            env = {k: v for k, v in rig.env().items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
            run = rig.run("token", env=env)
            recipe = [line.strip() for line in run.err.splitlines() if line.startswith("    ")]
            try:
                unlock = subprocess.run(
                    ["bash", "-c", "\n".join(recipe)],
                    input=session.password + "\n",
                    env=session.env,
                    capture_output=True,
                    text=True,
                    timeout=60,
                    check=False,
                )
                assert run.code == 69
                assert unlock.returncode == 0, unlock.stderr
                wait_until(lambda: unlocked(session), timeout=60, what="the unlock")
                assert rig.run("token").code == 0
                assert rig.leaks() == []
            finally:
                # The daemon the recipe started in place of the session's own.
                for pid in set(processes_with_home(session.home)) - set(session.pids):
                    os.kill(pid, signal.SIGKILL)


def on_a_terminal(
    harness: Harness, *args: str, prompt: str, env: dict[str, str]
) -> tuple[int, str]:
    """Run the command with a terminal for stdin and stdout; answer ``prompt`` with Ctrl-D."""
    master, slave = pty.openpty()
    process = subprocess.Popen(
        harness.command(*args),
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        start_new_session=True,
        # getpass reads /dev/tty: the terminal must be the controlling one, as a login's is.
        preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),  # noqa: PLW1509
    )
    os.close(slave)
    seen = b""
    try:
        while prompt.encode() not in seen:
            ready, _, _ = select.select([master], [], [], 30)
            assert ready, seen
            seen += os.read(master, 4096)
        os.write(master, b"\x04")  # Ctrl-D
        code = process.wait(timeout=30)
        while select.select([master], [], [], 0.5)[0]:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(master)
    text = seen.decode(errors="replace")
    harness.transcript.append(Run(tuple(args), code, text, ""))
    return code, text


class TestCtrlD:
    """Item 6: Ctrl-D at a prompt is an empty answer: its message, exit 2."""

    def test_set_secret(self, harness: Harness) -> None:
        code, text = on_a_terminal(
            harness, "config", "set-secret", prompt="Client secret", env=harness.env()
        )

        assert code == 2, text
        assert "no client secret was given" in text
        assert "internal error" not in text

    def test_config_init(self, harness: Harness, tmp_path: Path) -> None:
        env = harness.env(TVMANIAC_REFRESHD_CONFIG=str(tmp_path / "new.toml"))
        code, text = on_a_terminal(harness, "config", "init", prompt="Client ID", env=env)

        assert code == 2, text
        assert "the client id must be one non-empty line" in text
        assert "internal error" not in text
        assert not (tmp_path / "new.toml").exists()


class TestLoginWarnings:
    """Item 9: said before anything happens, and only what is true of this login."""

    def test_port_without_browser(self, harness: Harness) -> None:
        harness.emulator.configure(auto_approve_after_polls=0)
        run = harness.run("login", "--port", "8765")

        assert run.code == 0, run.err
        assert run.err == (
            "tvmaniac-refreshd: warning: --port is used only by a browser login (--browser); "
            "this is a device-code login\n"
        )

    def test_no_replace_warning_before_a_login_that_cannot_start(self, harness: Harness) -> None:
        login(harness)
        run = harness.run("login", "--browser")  # Trakt: no loopback redirect_uri configured

        assert run.code == 2
        assert "already logged in" not in run.err
        assert "redirect_uri" in run.err


# The command on a machine where systemd is not PID 1, whatever this host is: a private mount
# namespace hides /run/systemd (sd_booted(3) looks for /run/systemd/system).
_NO_SYSTEMD = 'if [ -d /run/systemd ]; then mount -t tmpfs none /run/systemd; fi; exec "$@"'
NO_SYSTEMD = ["unshare", "--mount", "--propagation", "private", "sh", "-c", _NO_SYSTEMD, "sh"]


class TestWithoutSystemd:
    """Item 14: no `service install` recommendation where it cannot work, and say why."""

    def env(self, harness: Harness, tmp_path: Path) -> dict[str, str]:
        return harness.env(XDG_CONFIG_HOME=str(tmp_path / "xdg"))

    def test_config_check_and_status(self, harness: Harness, tmp_path: Path) -> None:
        harness.seed()
        env = self.env(harness, tmp_path)
        check = harness.run("config", "check", env=env, prefix=NO_SYSTEMD)
        status = harness.run("status", env=env, prefix=NO_SYSTEMD)

        assert "service install" not in check.out + check.err
        assert "warn service: systemd: not running as the service manager; PID 1 is" in check.out
        assert status.code == 0, status.err
        assert "service install" not in status.out
        assert "service: systemd: not running as the service manager\n" in status.out
        assert "`tvmaniac-refreshd run` under the supervisor you have" in status.out

    def test_service_status(self, harness: Harness, tmp_path: Path) -> None:
        env = self.env(harness, tmp_path)
        text = harness.run("service", "status", env=env, prefix=NO_SYSTEMD)
        data = harness.run("service", "status", "--json", env=env, prefix=NO_SYSTEMD)

        assert text.code == 0
        assert text.out.startswith("systemd: not running as the service manager\n  PID 1 is")
        assert "not installed" not in text.out
        report = json.loads(data.out)
        assert (report["available"], report["installed"]) == (False, False)
        assert report["detail"].startswith("PID 1 is another init")

    def test_uninstall_with_nothing_installed(self, harness: Harness, tmp_path: Path) -> None:
        run = harness.run(
            "service", "uninstall", env=self.env(harness, tmp_path), prefix=NO_SYSTEMD
        )

        assert (run.code, run.err) == (0, "")
        assert run.out.startswith("No tvmaniac-refreshd units were installed; nothing to do.\n")

    def test_dry_run_warns(self, harness: Harness, tmp_path: Path) -> None:
        run = harness.run(
            "service", "install", "--dry-run", env=self.env(harness, tmp_path), prefix=NO_SYSTEMD
        )

        assert run.code == 0
        assert run.err.startswith(
            "tvmaniac-refreshd: warning: a real install cannot work here: systemd is not running "
            "as the service manager: PID 1 is another init"
        )
        assert "would write" in run.out
        assert not (tmp_path / "xdg" / "systemd").exists()

    def test_a_config_found_by_xdg_config_home_is_written_into_the_unit(
        self, harness: Harness, tmp_path: Path
    ) -> None:
        """The unit and cron have no XDG_CONFIG_HOME: the unit names the file, cron is told."""
        moved = tmp_path / "xdg" / "tvmaniac-refreshd" / "config.toml"
        moved.parent.mkdir(parents=True)
        moved.write_text(harness.config_path.read_text())
        moved.chmod(0o600)
        env = self.env(harness, tmp_path) | {"TVMANIAC_REFRESHD_CONFIG": ""}

        install = harness.run("service", "install", "--dry-run", env=env, prefix=NO_SYSTEMD)
        check = harness.run("config", "check", env=env, prefix=NO_SYSTEMD)

        assert install.code == 0, install.err
        assert f"-m tvmaniac_refreshd --config {moved} run" in install.out
        assert f"in a crontab pass --config {moved}" in check.out + check.err

    def test_install_says_why(self, harness: Harness, tmp_path: Path) -> None:
        run = harness.run("service", "install", env=self.env(harness, tmp_path), prefix=NO_SYSTEMD)

        assert run.code == 69
        assert "systemd is not running as the service manager" in run.err
        assert not (tmp_path / "xdg" / "systemd" / "user").exists() or not any(
            (tmp_path / "xdg" / "systemd" / "user").iterdir()
        )


class TestUsageErrors:
    """Item 8: the verb's own usage, and the nearest verb, option or config key."""

    def test_exec_without_the_separator(self, harness: Harness) -> None:
        run = harness.run("exec", "env")

        assert run.code == 2
        assert run.err.startswith("usage: tvmaniac-refreshd exec ")
        assert run.err.endswith(
            "tvmaniac-refreshd exec: error: the command to run goes after `--`: "
            "tvmaniac-refreshd exec -- env\n"
        )

    def test_a_misspelt_option_of_a_verb(self, harness: Harness) -> None:
        run = harness.run("token", "--jsn")

        assert run.code == 2
        assert run.err.startswith("usage: tvmaniac-refreshd token ")
        assert run.err.endswith(
            "tvmaniac-refreshd token: error: unknown option --jsn; did you mean --json?\n"
        )

    def test_a_misspelt_global_option_is_blamed_not_its_value(self, harness: Harness) -> None:
        run = harness.run("--acount", "x", "token")

        assert run.code == 2
        assert run.err.endswith(
            "tvmaniac-refreshd: error: unknown option --acount; did you mean --account?\n"
        )
        assert "'x'" not in run.err

    def test_a_misspelt_verb(self, harness: Harness) -> None:
        run = harness.run("logn")

        assert run.code == 2
        assert "error: unknown verb 'logn'; did you mean 'login'?" in run.err

    def test_a_misspelt_action(self, harness: Harness) -> None:
        run = harness.run("service", "instal")

        assert run.code == 2
        assert run.err.startswith("usage: tvmaniac-refreshd service ")
        assert "error: unknown action 'instal'; did you mean 'install'?" in run.err

    def test_a_misspelt_config_key(self, harness: Harness) -> None:
        harness.extra_config = '[refresh]\nthreshhold = "20%"\n'
        harness.write_config()

        run = harness.run("config", "check")

        assert run.code == 78
        assert "refresh.threshhold: unknown key (did you mean 'threshold'?)" in run.out


class TestSmallOnes:
    """Item 15, each through the real command (or the API)."""

    def test_a_public_client_is_not_said_to_have_a_secret_from_nowhere(
        self, harness: Harness
    ) -> None:
        url = harness.emulator.url
        harness.write_config(
            "[accounts.public]\n"
            'provider = "oauth2"\n'
            'client_id = "p"\n'
            'client_auth = "none"\n'
            f'token_url = "{url}/oauth/token"\n'
            f'device_authorization_url = "{url}/oauth/device/code"\n'
        )
        run = harness.run("config", "check")

        assert "a public client (no client secret)" in run.out
        assert "nowhere" not in run.out
        assert "(1 account: public)" in run.out
        assert "account(s)" not in run.out

    def test_a_fresh_7_day_token_is_valid_for_7d(self, harness: Harness) -> None:
        harness.emulator.configure(auto_approve_after_polls=0)
        run = harness.run("login")

        assert "the access token is valid for 7d.\n" in run.out

    def test_no_config_show_in_the_help(self, harness: Harness) -> None:
        assert "show" not in harness.run("config", "--help").out.split("options:")[0]

    def test_no_keyring_in_file_store_mode(self, harness: Harness) -> None:
        url = harness.emulator.url
        harness.write_config(
            "[accounts.default]\n"
            'provider = "trakt"\n'
            f'client_id = "{CLIENT_ID}"\n'
            f'auth_url = "{url}"\n'
            f'api_url = "{url}"\n'
            '[store]\nbackend = "file"\n'
        )
        run = harness.run("login")

        assert run.code == 78
        assert "store it in the file store with" in run.err
        assert "the keyring" not in run.err

    def test_off_a_terminal_login_says_it_waits(self, harness: Harness) -> None:
        harness.emulator.configure(auto_approve_after_polls=0)
        run = harness.run("login")

        assert "\nWaiting for approval...\n" in run.out

    def test_no_qr(self, harness: Harness) -> None:
        harness.emulator.configure(auto_approve_after_polls=0)
        terminal = Terminal(harness, "login", "--no-qr")
        terminal.read_until(r"Logged in")
        code, seen = terminal.finish()

        assert code == 0
        assert "QR code" not in seen
        assert not {"\u2580", "\u2584", "\u2588"} & set(seen)  # no block characters

    def test_status_check_is_quiet_unless_verbose(self, harness: Harness) -> None:
        harness.seed()
        quiet = harness.run("status", "--check")
        verbose = harness.run("-v", "status", "--check")

        assert (quiet.code, quiet.out, quiet.err) == (0, "", "")
        assert verbose.out.startswith("default: active\n")

    def test_status_json_with_a_broken_config(self, harness: Harness) -> None:
        harness.write_config("[accounts.default]\nprovider = 1\n")
        run = harness.run("status", "--json")

        assert run.code == 78
        report = json.loads(run.out)
        assert report["format_version"] == 1
        assert "invalid configuration" in report["error"]
        assert any("provider" in problem for problem in report["problems"])

    def test_api_errors_name_the_api_s_arguments(self, harness: Harness) -> None:
        url = harness.emulator.url
        harness.write_config(account_table("work", url) + account_table("home", url))
        script = (
            "from tvmaniac_refreshd.api import RefreshdError, get_token\n"
            "try:\n"
            "    get_token()\n"
            "except RefreshdError as exc:\n"
            "    print(exc)\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", script],
            env=harness.env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )

        assert result.stdout == "several accounts: pass account=NAME (home, work)\n"


def test_a_reader_that_went_away_is_not_an_internal_error(harness: Harness) -> None:
    """`tvmaniac-refreshd completion bash | head -1`: the reader may be gone before the write."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run(
            harness.command("completion", "bash"),
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            env=harness.env(),
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)

    assert result.stderr == ""
    assert result.returncode == 141
