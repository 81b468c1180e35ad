"""Proves the real OAuth2 server fixture (``OidcServer``, oidc-provider 9.13.3) with raw httpx.

No project code runs here: these tests pin down how the third-party server behaves (device
flow, rotation with reuse detection, revocation, client authentication, PKCE with a loopback
redirect on any port), so that the daemon's ``provider = "oauth2"`` tests can rely on it.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import select
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import oidc_server
from tests.support.oidc_server import (
    DEVICE_GRANT,
    MOUNTED_ROUTES,
    TOKEN_QUERY,
    OidcClient,
    OidcServer,
    OidcServerUnavailable,
)

REPO = Path(__file__).resolve().parents[2]
AT_TTL = 45
SCOPE = "openid offline_access"


@pytest.fixture
def server() -> Iterator[OidcServer]:
    """A fresh oidc-provider on a free loopback port; nothing secret may reach its output."""
    with OidcServer(access_token_ttl=AT_TTL) as running:
        yield running
    secrets_ = [c.client_secret for c in running.clients if c.client_secret is not None]
    output = "\n".join(running.stdout_lines + running.stderr_lines)
    assert [s for s in secrets_ if s in output] == []
    assert not running.running


def token_request(server: OidcServer, client: OidcClient, **data: str) -> httpx.Response:
    """POST to the token endpoint, authenticated the way ``client`` is registered."""
    return httpx.post(server.token_url, data={**client.form(), **data}, auth=client.auth)


def device_tokens(server: OidcServer, client: OidcClient, account: str | None = None) -> Any:
    """Run the device flow to the end for ``client`` and return the token response."""
    response = httpx.post(
        server.device_authorization_url,
        data={**client.form(), "scope": SCOPE},
        auth=client.auth,
    )
    assert response.status_code == 200, response.text
    authorization = response.json()
    server.approve_device(authorization["user_code"], account=account)
    tokens = token_request(
        server, client, grant_type=DEVICE_GRANT, device_code=authorization["device_code"]
    )
    assert tokens.status_code == 200, tokens.text
    return tokens.json()


def refresh(server: OidcServer, client: OidcClient, refresh_token: str) -> httpx.Response:
    """One refresh_token grant."""
    return token_request(server, client, grant_type="refresh_token", refresh_token=refresh_token)


def pkce_pair() -> tuple[str, str]:
    """A PKCE code verifier and its S256 challenge."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def authorization_request(
    server: OidcServer, client: OidcClient, redirect_uri: str, challenge: str, state: str
) -> str:
    """An authorization-code request URL with PKCE, asking for a refresh token."""
    params = {
        "response_type": "code",
        "client_id": client.client_id,
        "redirect_uri": redirect_uri,
        "scope": SCOPE,
        # oidc-provider drops offline_access from an authorization request without it.
        "prompt": "consent",
        "state": state,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    return str(httpx.URL(server.authorization_url, params=params))


def test_discovery_document_lists_every_endpoint(server: OidcServer) -> None:
    """Discovery names the issuer and the endpoints the fixture exposes, all on loopback."""
    assert server.metadata["issuer"] == server.issuer == f"http://127.0.0.1:{server.port}"
    for url in (
        server.token_url,
        server.device_authorization_url,
        server.revocation_url,
        server.introspection_url,
        server.authorization_url,
    ):
        assert url.startswith(server.issuer + "/")
    assert DEVICE_GRANT in server.metadata["grant_types_supported"]
    assert server.metadata["code_challenge_methods_supported"] == ["S256"]


def test_device_flow_issues_tokens_with_a_refresh_token(server: OidcServer) -> None:
    """Polling is pending until the user code is approved, then yields AT, RT and the TTL."""
    client = server.basic_client
    authorization = httpx.post(
        server.device_authorization_url, data={"scope": SCOPE}, auth=client.auth
    ).json()
    assert "interval" not in authorization  # clients must default to 5 s (RFC 8628)
    pending = token_request(
        server, client, grant_type=DEVICE_GRANT, device_code=authorization["device_code"]
    )
    assert (pending.status_code, pending.json()["error"]) == (400, "authorization_pending")

    server.approve_device(authorization["user_code"], account="bob")
    response = token_request(
        server, client, grant_type=DEVICE_GRANT, device_code=authorization["device_code"]
    )

    assert response.status_code == 200, response.text
    tokens = response.json()
    assert tokens["refresh_token"]
    assert tokens["expires_in"] == AT_TTL
    assert tokens["scope"] == SCOPE
    introspection = server.introspect(tokens["access_token"])
    assert introspection["active"] is True
    assert (introspection["sub"], introspection["client_id"]) == ("bob", client.client_id)


def test_refresh_rotates_and_reusing_the_old_token_revokes_the_grant(server: OidcServer) -> None:
    """Each refresh returns a new RT; presenting a consumed one fails and kills the grant."""
    client = server.basic_client
    first = device_tokens(server, client)
    second = refresh(server, client, first["refresh_token"]).json()
    assert second["refresh_token"] != first["refresh_token"]
    assert server.introspect(second["access_token"])["active"] is True

    reused = refresh(server, client, first["refresh_token"])

    assert (reused.status_code, reused.json()["error"]) == (400, "invalid_grant")
    server.wait_for_grant_error("invalid_grant - refresh token already used")
    newest = refresh(server, client, second["refresh_token"])
    assert (newest.status_code, newest.json()["error"]) == (400, "invalid_grant")
    assert server.introspect(second["access_token"]) == {"active": False}


def test_revoking_the_refresh_token_deactivates_the_whole_grant(server: OidcServer) -> None:
    """RFC 7009 revocation answers 200, and introspection then reports both tokens inactive."""
    client = server.basic_client
    tokens = device_tokens(server, client)

    response = httpx.post(
        server.revocation_url,
        data={"token": tokens["refresh_token"], "token_type_hint": "refresh_token"},
        auth=client.auth,
    )

    assert response.status_code == 200
    assert server.introspect(tokens["refresh_token"]) == {"active": False}
    assert server.introspect(tokens["access_token"]) == {"active": False}
    after = refresh(server, client, tokens["refresh_token"])
    assert (after.status_code, after.json()["error"]) == (400, "invalid_grant")


@pytest.mark.parametrize("kind", ["post_client", "public_client"])
def test_post_and_public_clients_get_and_refresh_tokens(server: OidcServer, kind: str) -> None:
    """client_secret_post and public (auth method none) clients run the device flow and refresh."""
    client: OidcClient = getattr(server, kind)
    assert client.auth is None
    tokens = device_tokens(server, client)

    refreshed = refresh(server, client, tokens["refresh_token"])

    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json()["refresh_token"] != tokens["refresh_token"]
    assert server.introspect(refreshed.json()["access_token"])["client_id"] == client.client_id


@pytest.mark.parametrize("kind", ["basic_client", "public_client"])
def test_pkce_authorization_code_flow_on_any_loopback_port(server: OidcServer, kind: str) -> None:
    """authorize() returns the loopback redirect, on a port never registered, and the code
    plus the PKCE verifier buy tokens with a refresh token."""
    client: OidcClient = getattr(server, kind)
    redirect_uri = "http://127.0.0.1:49152/callback"  # registered without a port
    verifier, challenge = pkce_pair()
    state = secrets.token_urlsafe(16)

    location = httpx.URL(
        server.authorize(authorization_request(server, client, redirect_uri, challenge, state))
    )

    assert str(location.copy_with(query=None)) == redirect_uri
    assert location.params["state"] == state
    assert location.params["iss"] == server.issuer
    response = token_request(
        server,
        client,
        grant_type="authorization_code",
        code=location.params["code"],
        redirect_uri=redirect_uri,
        code_verifier=verifier,
    )
    assert response.status_code == 200, response.text
    assert response.json()["refresh_token"]
    assert server.introspect(response.json()["access_token"])["sub"] == server.account


def test_wrong_pkce_verifier_is_invalid_grant(server: OidcServer) -> None:
    """A code redeemed with another verifier than the challenge's is refused."""
    client = server.public_client
    redirect_uri = "http://127.0.0.1:50000/callback"
    _, challenge = pkce_pair()
    location = httpx.URL(
        server.authorize(authorization_request(server, client, redirect_uri, challenge, "s"))
    )

    response = token_request(
        server,
        client,
        grant_type="authorization_code",
        code=location.params["code"],
        redirect_uri=redirect_uri,
        code_verifier=pkce_pair()[0],
    )

    assert (response.status_code, response.json()["error"]) == (400, "invalid_grant")
    server.wait_for_grant_error("invalid_grant - code_verifier does not match code_challenge")


def test_loopback_redirect_with_another_path_is_refused(server: OidcServer) -> None:
    """Only the port of the registered loopback URI may vary, not its path."""
    _, challenge = pkce_pair()
    url = authorization_request(
        server, server.public_client, "http://127.0.0.1:49152/elsewhere", challenge, "s"
    )

    with pytest.raises(AssertionError, match="redirect_uri"):
        server.authorize(url)


@pytest.mark.parametrize("kind", ["basic_client", "post_client"])
def test_wrong_client_secret_is_invalid_client(server: OidcServer, kind: str) -> None:
    """A confidential client with a wrong secret gets 401 invalid_client at the token endpoint."""
    client: OidcClient = getattr(server, kind)
    impostor = OidcClient(client.client_id, "not-the-secret", client.auth_method)
    tokens = device_tokens(server, client)

    response = refresh(server, impostor, tokens["refresh_token"])

    assert (response.status_code, response.json()["error"]) == (401, "invalid_client")
    assert refresh(server, client, tokens["refresh_token"]).status_code == 200


def test_denied_user_code_gives_access_denied(server: OidcServer) -> None:
    """A user code the user aborts makes the device's next poll fail with access_denied."""
    client = server.public_client
    authorization = httpx.post(
        server.device_authorization_url, data={**client.form(), "scope": SCOPE}
    ).json()

    server.deny_device(authorization["user_code"])

    response = token_request(
        server, client, grant_type=DEVICE_GRANT, device_code=authorization["device_code"]
    )
    assert (response.status_code, response.json()["error"]) == (400, "access_denied")


def test_stop_leaves_no_node_process() -> None:
    """stop() reaps node, and a second stop() is harmless."""
    with OidcServer() as running:
        pid = running.pid
        assert running.running
    running.stop()

    assert not running.running
    assert not Path(f"/proc/{pid}").exists() or _is_not_node(pid)


def _is_not_node(pid: int) -> bool:
    """Whether ``pid`` was reused by another program (the reaped node's PID is free again)."""
    try:
        return "node" not in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return True


def test_node_exits_when_the_test_process_dies_without_stop() -> None:
    """A test process killed before stop() leaves no orphan: node exits when its stdin closes."""
    script = (
        "import os\n"
        "from tests.support.oidc_server import OidcServer\n"
        "server = OidcServer()\n"
        "server.start()\n"
        "print(server.pid, flush=True)\n"
        "os._exit(0)  # no stop(), no finalizers: as if killed\n"
    )
    child = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True
    )
    pid = int(child.stdout.split()[-1])
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return  # already gone and reaped
    try:
        # A pidfd turns readable when the process exits; the bound only stops a hang.
        readable, _, _ = select.select([pidfd], [], [], 10)
    finally:
        os.close(pidfd)
    assert readable, f"node (pid {pid}) outlived the process that started it"


def test_missing_npm_packages_fail_with_a_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without tests/oidc/node_modules the fixture fails, naming `make test`, and never skips."""
    monkeypatch.setattr(oidc_server, "PROVIDER_PACKAGE", Path(os.devnull) / "missing")

    with pytest.raises(OidcServerUnavailable, match="make test"):
        OidcServer().start()


def test_mounted_endpoints_need_their_slash_and_query(tmp_path: Path) -> None:
    """The routes option moves the endpoints; oidc-provider then answers 404 without the
    trailing slash, and the server 404 without the token endpoint's query. The record keeps
    what was sent, every secret value replaced by '*'."""
    record = tmp_path / "requests.jsonl"
    with OidcServer(routes=MOUNTED_ROUTES, queries=TOKEN_QUERY, record_file=record) as server:
        client = server.basic_client
        assert server.token_url == f"{server.issuer}/o/token/?p=B2C_1_refreshd"
        assert server.device_authorization_url == f"{server.issuer}/o/device/"
        refresh = {"grant_type": "refresh_token", "refresh_token": "not-a-token"}

        known = httpx.post(server.token_url, data=refresh, auth=client.auth)
        no_query = httpx.post(f"{server.issuer}/o/token/", data=refresh, auth=client.auth)
        no_slash = httpx.post(
            f"{server.issuer}/o/token?p=B2C_1_refreshd", data=refresh, auth=client.auth
        )
        device_no_slash = httpx.post(
            f"{server.issuer}/o/device", data={"scope": SCOPE}, auth=client.auth
        )
        tokens = device_tokens(server, client)
        recorded = server.recorded_requests()

    assert (known.status_code, known.json()["error"]) == (400, "invalid_grant")
    assert no_query.status_code == 404
    assert no_slash.status_code == 404
    assert device_no_slash.status_code == 404
    assert tokens["refresh_token"]
    assert recorded[0] == {
        "method": "POST",
        "target": "/o/token/?p=B2C_1_refreshd",
        "contentType": "application/x-www-form-urlencoded",
        "basicClientId": client.client_id,
        "form": {"grant_type": "refresh_token", "refresh_token": "*"},
    }
    assert [r["target"] for r in recorded[1:]][:3] == [
        "/o/token/",
        "/o/token?p=B2C_1_refreshd",
        "/o/device",
    ]
    assert client.client_secret is not None
    assert client.client_secret not in record.read_text()
    assert tokens["refresh_token"] not in record.read_text()
