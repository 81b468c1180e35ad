"""Encryption at rest of the file store with systemd-creds, for real, in a booted Debian 13
container (systemd 257): login, token, refresh and the daemon service with `[store] encrypt =
"systemd-creds"`; no token readable in the file; another user cannot decrypt it. The host's own
systemd (Debian 12, 252) cannot encrypt for a user: there every verb exits 78.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.support.container import Container, available, poll
from tests.support.harness import CLIENT_ID, CLIENT_SECRET, Harness
from tests.support.trixie import interpreter, interpreter_binds, python_path, trixie_root
from trakt_emulator import Emulator

pytestmark = pytest.mark.container

LIFETIME = 20
TOKENS = "/home/tok/.local/state/tvmaniac-refreshd/tokens"


def config(emulator: Emulator) -> str:
    return (
        "[accounts.default]\n"
        f'provider = "trakt"\nclient_id = "{CLIENT_ID}"\nclient_secret = "{CLIENT_SECRET}"\n'
        f'auth_url = "{emulator.url}"\napi_url = "{emulator.url}"\n'
        '[store]\nbackend = "file"\nencrypt = "systemd-creds"\n[alerts]\ndesktop = false\n'
    )


@dataclass
class Trixie:
    container: Container
    emulator: Emulator

    def cli(self, *args: str, user: str = "tok") -> subprocess.CompletedProcess[str]:
        return self.container.run(
            [interpreter(), "-m", "tvmaniac_refreshd", *args],
            user=user,
            env={"PYTHONPATH": python_path(self.container.repo)},
        )


@pytest.fixture(scope="module")
def trixie() -> Iterator[Trixie]:
    reason = available()
    if reason is not None:
        pytest.fail(f"cannot boot a systemd container here: {reason}")
    root = trixie_root()
    with (
        Emulator(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, access_ttl=LIFETIME) as emu,
        Container(lower=root, binds=interpreter_binds()) as container,
    ):
        version = container.run(["systemctl", "--version"], check=True).stdout.split()[1]
        assert int(version) >= 256, version
        container.python = interpreter()
        for user in ("tok", "eve"):
            container.create_user(user)
        container.run(
            [
                "sh",
                "-c",
                "mkdir -p ~/.config/tvmaniac-refreshd && umask 077 && "
                "cat > ~/.config/tvmaniac-refreshd/config.toml",
            ],
            user="tok",
            input=config(emu),
            check=True,
        )
        emu.configure(auto_approve_after_polls=0, device_interval=1)
        yield Trixie(container, emu)


def test_the_file_store_encrypts_for_the_user(trixie: Trixie) -> None:
    login = trixie.cli("login")
    assert login.returncode == 0, login.stderr
    assert f"{TOKENS}/default.json.cred" in login.stdout
    grant = trixie.emulator.state()["grants"][0]  # type: ignore[index]

    raw = trixie.container.run(["cat", f"{TOKENS}/default.json.cred"], check=True).stdout
    assert grant["refresh_token"] not in raw
    assert grant["access_token"] not in raw
    listing = trixie.container.run(["ls", "-A", TOKENS], check=True).stdout.split()
    assert listing == ["default.json.cred"]  # no plain copy anywhere

    token = trixie.cli("token")
    assert token.stdout.strip() == grant["access_token"], token.stderr
    refresh = trixie.cli("refresh", "--force")
    assert refresh.returncode == 0, refresh.stderr
    report = json.loads(trixie.cli("status", "--json").stdout)
    assert "encrypted with systemd-creds" in report["store"]["protection"]
    assert report["accounts"][0]["last_result"] == "refreshed"
    check = trixie.cli("config", "check")
    assert check.returncode == 0, check.stdout
    assert "encrypted with systemd-creds" in check.stdout

    # A copy readable by everyone: its owner can decrypt it, another user cannot (bound to tok).
    trixie.container.run(
        ["sh", "-c", f"cp {TOKENS}/default.json.cred /srv/copy && chmod 644 /srv/copy"],
        check=True,
    )
    decrypt = ["systemd-creds", "--user", "decrypt", "--name=default.json.cred", "/srv/copy", "-"]
    plain = '"format":"tvmaniac-refreshd/tokens"'
    assert plain in trixie.container.run(decrypt, user="tok").stdout
    stolen = trixie.container.run(decrypt, user="eve")
    assert stolen.returncode != 0
    assert plain not in stolen.stdout


def test_the_service_refreshes_the_encrypted_file(trixie: Trixie) -> None:
    # The unit runs the host interpreter bound in, which finds the project through PYTHONPATH.
    path = python_path(trixie.container.repo)
    trixie.container.user_systemctl("tok", "set-environment", f"PYTHONPATH={path}", check=True)
    install = trixie.cli("service", "install")
    assert install.returncode == 0, install.stderr
    poll(
        lambda: trixie.container.journal(
            "tok", "SYSLOG_IDENTIFIER=tvmaniac-refreshd", "REFRESH_RESULT=refreshed"
        ),
        timeout=90,
        what="a refresh by the service",
    )


def test_an_older_systemd_exits_78_and_stores_nothing(harness: Harness) -> None:
    """The host's systemd 252 cannot encrypt for a user: every verb says so, nothing is written."""
    harness.write_config(config(harness.emulator))
    harness.seed()
    for args in (("token",), ("status",), ("config", "check"), ("run",)):
        run = harness.run(*args)
        assert run.code == 78, (args, run.out, run.err)
        assert "systemd 256 or newer" in run.out + run.err
    assert not (harness.state_dir / "tokens").exists()


def test_plain_files_left_from_before_encryption(trixie: Trixie) -> None:
    """Issue 24: turning `encrypt = "systemd-creds"` on left the plain ACCOUNT.json and
    ACCOUNT.client_secret on disk for good, unread and unmentioned. Now status, config check
    and login name them, `store migrate --encrypt` encrypts them in place, and `logout`
    deletes them."""
    user = "pat"
    trixie.container.create_user(user)
    tokens = f"/home/{user}/.local/state/tvmaniac-refreshd/tokens"
    plain = config(trixie.emulator).replace('encrypt = "systemd-creds"\n', "")

    def write_config(text: str) -> None:
        trixie.container.run(
            [
                "sh",
                "-c",
                "mkdir -p ~/.config/tvmaniac-refreshd && umask 077 && "
                "cat > ~/.config/tvmaniac-refreshd/config.toml",
            ],
            user=user,
            input=text,
            check=True,
        )

    def listing() -> list[str]:
        return trixie.container.run(["ls", "-A", tokens], user=user).stdout.split()

    write_config(plain)
    assert trixie.cli("login", user=user).returncode == 0
    secret = trixie.container.run(
        [interpreter(), "-m", "tvmaniac_refreshd", "config", "set-secret"],
        user=user,
        env={"PYTHONPATH": python_path(trixie.container.repo)},
        input=f"{CLIENT_SECRET}\n",
    )
    assert secret.returncode == 0, secret.stderr
    assert listing() == ["default.client_secret", "default.json"]
    before = trixie.cli("token", user=user).stdout.strip()

    write_config(config(trixie.emulator))
    leftovers = [f"{tokens}/default.json", f"{tokens}/default.client_secret"]
    status = trixie.cli("status", "--json", user=user)
    assert json.loads(status.stdout)["store"]["plaintext_leftovers"] == leftovers
    assert "store migrate --encrypt" in status.stderr
    check = trixie.cli("config", "check", user=user)
    assert "unencrypted copies of 'default' from before encrypt" in check.stdout
    assert "store migrate --encrypt" in check.stdout

    migrate = trixie.cli("store", "migrate", "--encrypt", user=user)
    assert migrate.returncode == 0, migrate.stderr
    assert "encrypted tokens and client secret in place" in migrate.stdout
    assert listing() == ["default.client_secret.cred", "default.json.cred"]
    assert trixie.cli("token", user=user).stdout.strip() == before
    status = trixie.cli("status", "--json", user=user)
    assert json.loads(status.stdout)["store"]["plaintext_leftovers"] == []

    # Plain files again (a login made while the config was switched back), then logout.
    write_config(plain)
    assert trixie.cli("login", user=user).returncode == 0
    write_config(config(trixie.emulator))
    login = trixie.cli("login", user=user)
    assert login.returncode == 0, login.stderr
    assert f"{tokens}/default.json" in login.stderr
    logout = trixie.cli("logout", user=user)
    assert logout.returncode == 0, logout.stderr
    assert f"Deleted the unencrypted copies {tokens}/default.json" in logout.stdout
    assert listing() == ["default.client_secret.cred"]
