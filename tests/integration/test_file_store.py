"""The file store with the real command: a machine with no session bus logs in, refreshes and
serves tokens; `store migrate` moves a login between the real gnome-keyring and a file; a full
disk and a read-only file system are told with the directory and keep the old file.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

from tests.support.harness import CLIENT_ID, CLIENT_SECRET, Harness

NO_BUS = "unix:path=/nonexistent/bus"  # as on a server: no Secret Service anywhere


def file_config(harness: Harness, *, backend: str = "file", secret: bool = True) -> None:
    emu = harness.emulator.url
    harness.write_config(
        "[accounts.default]\n"
        f'provider = "trakt"\nclient_id = "{CLIENT_ID}"\n'
        + (f'client_secret = "{CLIENT_SECRET}"\n' if secret else "")
        + f'auth_url = "{emu}"\napi_url = "{emu}"\n'
        '[http]\nconnect_timeout = "2s"\nread_timeout = "3s"\n'
        f'[store]\nbackend = "{backend}"\ntimeout = "5s"\nlock_timeout = "30s"\n'
    )


def tokens_dir(harness: Harness) -> Path:
    return harness.state_dir / "tokens"


def headless(harness: Harness) -> dict[str, str]:
    return harness.env(DBUS_SESSION_BUS_ADDRESS=NO_BUS)


class TestHeadless:
    def test_login_token_refresh_and_status_without_a_keyring(self, harness: Harness) -> None:
        file_config(harness)
        harness.emulator.configure(auto_approve_after_polls=0)
        env = headless(harness)

        login = harness.run("login", env=env)
        assert login.code == 0, login.err
        path = tokens_dir(harness) / "default.json"
        assert str(path) in login.out
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        assert harness.stored() is None  # nothing went to the keyring

        grant = harness.emulator.state()["grants"][0]  # type: ignore[index]
        first = harness.run("token", env=env)
        quick = harness.run("token", env=env)  # the quick path reads the file itself
        assert first.code == quick.code == 0, first.err + quick.err
        assert first.out.strip() == quick.out.strip() == grant["access_token"]

        refresh = harness.run("refresh", "--force", env=env)
        assert refresh.code == 0, refresh.err
        stored = json.loads(path.read_text())
        assert stored["refresh_token"] != grant["refresh_token"]
        assert harness.run("token", env=env).out.strip() == stored["access_token"]

        status = harness.run("status", "--json", env=env)
        assert status.code == 0, status.err
        report = json.loads(status.out)
        assert report["store"]["backend"] == "file"
        assert report["store"]["location"] == str(path.parent)
        assert "not by encryption" in report["store"]["protection"]
        assert report["accounts"][0]["state"] == "active"
        text = harness.run("status", env=env)
        assert "store: file (" in text.out
        assert "not by encryption" in text.out

        check = harness.run("config", "check", env=env)
        assert check.code == 0, check.out
        assert "ok   store (file): file store in" in check.out
        assert "not by encryption" in check.out
        assert "session bus" not in check.out

    def test_the_client_secret_can_live_in_the_file_store(self, harness: Harness) -> None:
        file_config(harness, secret=False)
        env = headless(harness)

        stored = harness.run("config", "set-secret", stdin=CLIENT_SECRET + "\n", env=env)
        assert stored.code == 0, stored.err
        assert "in the file store" in stored.out
        path = tokens_dir(harness) / "default.client_secret"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        check = harness.run("config", "check", env=env)
        assert "client secret from the file store" in check.out
        harness.emulator.configure(auto_approve_after_polls=0)
        assert harness.run("login", env=env).code == 0  # the emulator requires the secret

    def test_the_keyring_stays_the_default_and_never_falls_back(self, harness: Harness) -> None:
        """Without [store] backend, no session bus means exit 69, not a silent file."""
        harness.seed()
        run = harness.run("token", env=headless(harness))

        assert run.code == 69
        assert "Secret Service" in run.err
        assert not tokens_dir(harness).exists()


class TestMigrate:
    def test_keyring_to_file_and_back(self, harness: Harness) -> None:
        grant = harness.seed()
        harness.run("config", "set-secret", stdin="moved-secret\n")

        to_file = harness.run("store", "migrate", "--to", "file")
        assert to_file.code == 0, to_file.err
        assert "moved tokens and client secret to the file store" in to_file.out
        assert 'set [store] backend = "file"' in to_file.out
        assert harness.stored() is None
        assert harness.keyring.lookup("tvmaniac-refreshd", "default:client_secret") is None
        file_config(harness)
        token = harness.run("token", env=headless(harness))
        assert token.out.strip() == grant["access_token"], token.err

        back = harness.run("store", "migrate", "--to", "keyring")
        assert back.code == 0, back.err
        assert not (tokens_dir(harness) / "default.json").exists()
        assert not (tokens_dir(harness) / "default.client_secret").exists()
        stored = harness.stored()
        assert stored is not None
        assert stored["access_token"] == grant["access_token"]
        assert harness.keyring.lookup("tvmaniac-refreshd", "default:client_secret") == (
            "moved-secret"
        )

    def test_an_unreachable_keyring_keeps_the_file(self, harness: Harness) -> None:
        file_config(harness)
        harness.emulator.configure(auto_approve_after_polls=0)
        assert harness.run("login", env=headless(harness)).code == 0
        before = (tokens_dir(harness) / "default.json").read_bytes()

        run = harness.run("store", "migrate", "--to", "keyring", env=headless(harness))
        assert run.code == 69
        assert "stay where they were" in run.err
        assert (tokens_dir(harness) / "default.json").read_bytes() == before


# Runs the command in a private mount namespace whose token directory is a tiny tmpfs holding a
# copy of the token file, filled up or made read-only; then records what the directory holds.
_CONFINED = """\
set -eu
tokens=$1 backup=$2 mode=$3 after=$4; shift 4
mount -t tmpfs -o size=16k,mode=0700 refreshd-test "$tokens"
cp -p "$backup" "$tokens/default.json"
if [ "$mode" = full ]; then dd if=/dev/zero of="$tokens/filler" bs=1k 2>/dev/null || true; fi
if [ "$mode" = read-only ]; then mount -o remount,ro "$tokens"; fi
rc=0; "$@" || rc=$?
cp "$tokens/default.json" "$after.json"; ls -A "$tokens" > "$after.ls"
exit $rc
"""


class TestDiskFailures:
    def confined_login(self, harness: Harness, mode: str) -> tuple[int, str, bytes, list[str]]:
        file_config(harness)
        harness.emulator.configure(auto_approve_after_polls=0)
        assert harness.run("login", env=headless(harness)).code == 0
        backup = harness.root / "backup.json"
        backup.write_bytes((tokens_dir(harness) / "default.json").read_bytes())
        backup.chmod(0o600)
        after = harness.root / "after"
        prefix = ["unshare", "--mount", "--propagation", "private", "sh", "-c", _CONFINED, "sh"]
        prefix += [str(tokens_dir(harness)), str(backup), mode, str(after)]
        run = harness.run("login", env=headless(harness), prefix=prefix)
        kept = (harness.root / "after.json").read_bytes()
        assert kept == backup.read_bytes()
        return run.code, run.err, kept, (harness.root / "after.ls").read_text().split()

    def test_a_full_disk_names_the_directory_and_keeps_the_old_login(
        self, harness: Harness
    ) -> None:
        code, err, _, listing = self.confined_login(harness, "full")

        assert code == 69
        assert f"the file system holding {tokens_dir(harness)} is full" in err
        assert sorted(listing) == ["default.json", "filler"]  # no temporary file left

    def test_a_read_only_directory_names_it_and_keeps_the_old_login(self, harness: Harness) -> None:
        code, err, _, listing = self.confined_login(harness, "read-only")

        assert code == 69
        assert f"{tokens_dir(harness)} is on a read-only file system" in err
        assert listing == ["default.json"]
