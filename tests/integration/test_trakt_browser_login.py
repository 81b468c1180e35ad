"""`login --browser` for Trakt: PKCE (S256), the registered loopback redirect, no client secret;
against the emulator's /oauth/authorize and token endpoint, with the real keyring."""

from __future__ import annotations

import socket

import httpx
import pytest

from tests.support.harness import CLIENT_SECRET, Harness, Run


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
