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
