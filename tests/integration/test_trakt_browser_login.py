"""`login --browser` for Trakt: PKCE (S256), the registered loopback redirect, no client secret;
against the emulator's /oauth/authorize and token endpoint, with the real keyring."""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.support.harness import CLIENT_ID, CLIENT_SECRET, Harness, Run


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def registered(harness: Harness) -> str:
    """The Trakt app registers a loopback redirect URI; the account names the same."""
    redirect = f"http://127.0.0.1:{free_port()}/callback"
    harness.emulator.configure(redirect_uris=f"urn:ietf:wg:oauth:2.0:oob {redirect}")
    harness.emulator.configure(auto_approve_user="alice")
    harness.extra_config = ""
    text = harness.config_path.read_text().replace(
        "[http]", f'redirect_uri = "{redirect}"\n[http]', 1
    )
    harness.write_config(text)
    return redirect


def browser_login(harness: Harness) -> tuple[Run, str]:
    """Run `login --browser`, follow the printed URL as the user's browser would."""
    process = harness.spawn("login", "--browser")
    assert process.stdout is not None
    url = ""
    for line in process.stdout:
        if line.strip().startswith("http"):
            url = line.strip()
            break
    with httpx.Client(timeout=30) as browser:
        # The printed link is our listener's start page: it sends the browser on, once.
        started = browser.get(url)
        assert started.status_code == 302, started.text
        url = started.headers["location"]
        approved = browser.get(url)  # the emulator approves as the configured user
        assert approved.status_code == 302, approved.text
        landed = browser.get(approved.headers["location"])
        assert landed.status_code == 200
    out, err = process.communicate(timeout=60)
    run = Run(("login", "--browser"), process.returncode, out, err)
    harness.transcript.append(run)
    return run, url


def test_login_with_pkce_and_no_client_secret(harness: Harness, registered: str) -> None:
    run, url = browser_login(harness)

    assert run.code == 0, run.err
    assert url.startswith(f"{harness.emulator.url}/oauth/authorize?")
    assert "code_challenge_method=S256" in url
    exchanges = [
        entry["body"]
        for entry in harness.emulator.requests("/oauth/token")
        if isinstance(entry["body"], dict)
        and entry["body"].get("grant_type") == "authorization_code"
    ]
    assert len(exchanges) == 1
    body = exchanges[0]
    assert isinstance(body, dict)
    assert body["redirect_uri"] == registered
    assert "code_verifier" in body
    assert "client_secret" not in body  # PKCE: the verifier proves it, not a secret
    stored = harness.stored()
    assert stored is not None
    assert harness.run("token").out == f"{stored['access_token']}\n"
    assert harness.run("refresh", "--force").code == 0  # the grant refreshes as a device one


def test_without_a_loopback_redirect_uri_it_says_how_to_set_one(harness: Harness) -> None:
    run = harness.run("login", "--browser")

    assert run.code == 2
    assert 'redirect_uri = "http://127.0.0.1:8765/callback"' in run.err
    assert CLIENT_SECRET not in run.err


# What another local user runs: one GET, redirects not followed, as his own uid.
INTRUDER_GET = """
import http.client, sys, urllib.parse
url = urllib.parse.urlsplit(sys.argv[1])
connection = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
try:
    target = url.path + ("?" + url.query if url.query else "")
    connection.request("GET", target, headers={"User-Agent": "Mozilla/5.0 (intruder)"})
    answer = connection.getresponse()
    print(answer.status, answer.getheader("Location") or "")
except OSError as exc:
    print("failed", type(exc).__name__)
"""


@pytest.fixture
def intruder() -> Iterator[tuple[int, int]]:
    """A throwaway local user (uid, gid), removed afterwards; the suite runs as root."""
    if os.geteuid() != 0 or shutil.which("useradd") is None or shutil.which("setpriv") is None:
        pytest.skip("needs root, useradd and setpriv to act as a second local user")
    name = f"tvm-intruder-{secrets.token_hex(4)}"
    for _ in range(30):  # another test run may hold the lock on /etc/passwd for a moment
        made = subprocess.run(
            ["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
            capture_output=True,
            text=True,
            check=False,
        )
        if made.returncode != 10:  # 10: cannot lock /etc/passwd
            break
        time.sleep(0.5)  # a bounded retry for the lock, not a wait for time to pass
    assert made.returncode == 0, made.stderr
    try:
        entry = pwd.getpwnam(name)
        yield entry.pw_uid, entry.pw_gid
    finally:
        subprocess.run(["userdel", name], capture_output=True, check=False)


def as_intruder(intruder: tuple[int, int], url: str) -> str:
    """GET ``url`` as the other user; return "STATUS LOCATION" or "failed ERROR"."""
    uid, gid = intruder
    result = subprocess.run(
        [
            "setpriv",
            f"--reuid={uid}",
            f"--regid={gid}",
            "--clear-groups",
            "/usr/bin/python3",
            "-I",
            "-c",
            INTRUDER_GET,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd="/",
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_another_local_user_cannot_log_you_in_to_his_account(
    harness: Harness, registered: str, intruder: tuple[int, int]
) -> None:
    """The attack of the third review: another user reads the link the browser was given
    (its argv), authorizes the same public client in his own account with our challenge, and
    sends his code to our listener. The link holds neither state nor challenge, and the
    listener answers no other user's connection; the login then says whose account it got."""
    process = harness.spawn("login", "--browser")
    try:
        assert process.stdout is not None
        link = ""
        for line in process.stdout:
            if line.strip().startswith("http"):
                link = line.strip()
                break
        # 1. The intruder fetches the link from the browser's argv first: refused.
        assert as_intruder(intruder, link) == "403"
        with httpx.Client(timeout=30) as browser:
            started = browser.get(link)
            assert started.status_code == 302, started.text
            authorize = started.headers["location"]
            # 2. Suppose he learnt state and challenge anyway: his own grant, our listener.
            harness.emulator.configure(auto_approve_user="mallory")
            his = httpx.get(authorize, timeout=30).headers["location"]
            harness.emulator.configure(auto_approve_user="alice")
            assert as_intruder(intruder, his) == "403"
            # 3. The user's own browser completes the login.
            approved = browser.get(authorize)
            assert browser.get(approved.headers["location"]).status_code == 200
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    run = Run(("login", "--browser"), process.returncode, out, err)
    harness.transcript.append(run)

    assert run.code == 0, run.err
    assert "Logged in as 'alice'" in run.out
    assert f"from a process of uid {intruder[0]}" in run.out
    stored = harness.stored()
    assert stored is not None
    settings = httpx.get(
        f"{harness.emulator.url}/users/settings",
        headers={
            "trakt-api-key": CLIENT_ID,
            "trakt-api-version": "2",
            "Authorization": f"Bearer {stored['access_token']}",
        },
        timeout=30,
    )
    assert settings.json()["user"]["username"] == "alice"
    status = json.loads(harness.run("status", "--json").out)
    assert status["accounts"][0]["logged_in_as"] == "alice"
    assert "logged in as:         alice" in harness.run("status").out
