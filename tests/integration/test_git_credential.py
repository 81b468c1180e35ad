"""`git-credential` with a real git against a real git smart-HTTP server (git http-backend) that
accepts only tokens the real OAuth2 server (oidc-provider) vouches for by introspection."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_oauth2_interop import login_by_device, oauth2_config
from tests.support.git_server import GitServer
from tests.support.harness import REPO, Harness, Run
from tests.support.oidc_server import OidcServer

AT_TTL = 300


@pytest.fixture
def oidc() -> Iterator[OidcServer]:
    with OidcServer(access_token_ttl=AT_TTL) as server:
        yield server


@pytest.fixture
def git_server(oidc: OidcServer, tmp_path: Path) -> Iterator[GitServer]:
    def active(token: str) -> bool:
        return bool(oidc.introspect(token).get("active"))

    with GitServer(tmp_path / "served", token_is_active=active) as server:
        server.create_repository("notes", {"README": "hello from the served repository\n"})
        yield server


@pytest.fixture
def rig(harness: Harness, oidc: OidcServer, git_server: GitServer) -> Harness:
    harness.extra_secrets |= {c.client_secret for c in oidc.clients if c.client_secret}
    config = oauth2_config(oidc, oidc.basic_client, git_host=f'"{git_server.host}"')
    harness.write_config(config)
    assert login_by_device(harness, oidc).code == 0
    return harness


def stored(rig: Harness) -> dict[str, object]:
    found = rig.stored()
    assert found is not None
    rig.extra_secrets |= {str(found["access_token"]), str(found["refresh_token"])}
    return found


def git(rig: Harness, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run real git with only our helper configured (no system or user config, no prompt)."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    config = home / ".gitconfig"
    helper = f"!{sys.executable} -m tvmaniac_refreshd git-credential"
    config.write_text(f"[credential]\n\thelper = {helper}\n")
    env = rig.env(
        HOME=str(home),
        GIT_CONFIG_GLOBAL=str(config),
        GIT_CONFIG_NOSYSTEM="1",
        GIT_TERMINAL_PROMPT="0",
        GIT_ASKPASS="/bin/false",
        PYTHONPATH=str(REPO),
    )
    return subprocess.run(
        ["git", *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def helper(rig: Harness, action: str, stanza: str) -> Run:
    return rig.run("git-credential", action, stdin=stanza)


def test_git_clones_with_the_token(rig: Harness, git_server: GitServer, tmp_path: Path) -> None:
    result = git(rig, tmp_path, "clone", "-q", f"{git_server.url}/notes.git", str(tmp_path / "c"))

    assert result.returncode == 0, result.stderr
    assert (tmp_path / "c" / "README").read_text() == "hello from the served repository\n"
    assert git_server.refused >= 1  # git asked without credentials first, then the helper
    token = str(stored(rig)["access_token"])
    assert {user for user, _ in git_server.accepted} == {"oauth2"}
    assert {sent for _, sent in git_server.accepted} == {token}


def test_an_expired_token_is_refreshed_before_git_gets_it(
    rig: Harness, oidc: OidcServer, git_server: GitServer, tmp_path: Path
) -> None:
    before = stored(rig)
    # Make the stored token expired in our eyes (no waiting): its recorded expiry is past.
    expired = dict(before, created_at=int(time.time()) - 2 * AT_TTL)
    expired["expires_at"] = int(expired["created_at"]) + AT_TTL  # type: ignore[call-overload]
    rig.put_item("default", json.dumps(expired))

    result = git(rig, tmp_path, "clone", "-q", f"{git_server.url}/notes.git", str(tmp_path / "c"))

    assert result.returncode == 0, result.stderr
    after = stored(rig)
    assert after["access_token"] != before["access_token"]
    assert after["refresh_token"] != before["refresh_token"]
    assert {sent for _, sent in git_server.accepted} == {after["access_token"]}
    assert oidc.introspect(str(after["access_token"]))["active"] is True
    assert oidc.grant_errors == []


def test_get_answers_for_its_host_and_nothing_else(rig: Harness, git_server: GitServer) -> None:
    run = helper(rig, "get", f"protocol=http\nhost={git_server.host}\npath=notes.git\n\n")

    assert run.code == 0, run.err
    lines = dict(line.split("=", 1) for line in run.out.splitlines())
    data = stored(rig)
    assert lines == {
        "username": "oauth2",
        "password": data["access_token"],
        "password_expiry_utc": str(data["expires_at"]),
    }
    for stanza in (
        "protocol=https\nhost=elsewhere.example\n\n",  # another host: the next helper's
        f"protocol=ftp\nhost={git_server.host}\n\n",  # neither https nor loopback http
        f"protocol=http\nhost={git_server.host}\nusername=someone-else\n\n",  # another user
    ):
        other = helper(rig, "get", stanza)
        assert (other.code, other.out, other.err) == (0, "", ""), stanza
    # store and erase are git's bookkeeping: they never touch our keyring item.
    for action in ("store", "erase"):
        stanza = f"protocol=http\nhost={git_server.host}\nusername=oauth2\npassword=x\n\n"
        assert (helper(rig, action, stanza).code, stored(rig)) == (0, data)


def test_garbage_or_no_host_answers_nothing_with_a_warning(harness: Harness) -> None:
    """No login needed: the stanza is refused before any account is looked at."""
    harness.write_config(
        '[accounts.default]\nprovider = "oauth2"\nclient_id = "c"\n'
        'token_url = "http://127.0.0.1:9/token"\n'
        'device_authorization_url = "http://127.0.0.1:9/device"\n'
        'git_host = ["127.0.0.1:9", "git.example.com"]\n'
    )
    for stanza in ("garbage without an equals sign\n", "protocol=https\n\n", "=value\n", ""):
        run = helper(harness, "get", stanza)
        assert (run.code, run.out) == (0, ""), stanza
        assert "warning" in run.err, stanza
    assert helper(harness, "approve", "").code == 2
