"""Tests for the Trakt.tv OAuth emulator: endpoints, rotation, faults, hooks, control API, CLI."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from trakt_emulator import ACCESS_TTL, Emulator, EmulatorControl

CLIENT_ID = "test-client-id"
CLIENT_SECRET = "test-client-secret-do-not-print"
UA = {"User-Agent": "tvmaniac-refreshd-tests/1.0"}
OOB = "urn:ietf:wg:oauth:2.0:oob"
HEX64 = re.compile(r"[0-9a-f]{64}")
REPO = Path(__file__).resolve().parents[2]
# httpx builds a TLS context per client even for http:// URLs; one shared context keeps it cheap.
TLS = ssl.create_default_context()
# The emulator's time in unit tests: frozen, and moved only by advance_clock. On the wall clock,
# a test comparing a token's created_at with emu.now() fails whenever a second boundary falls
# between the request and the comparison.
FROZEN_TIME = 1_700_000_000.25


@pytest.fixture
def emu() -> Iterator[Emulator]:
    """A started emulator with one registered client and a frozen clock."""
    emulator = Emulator(CLIENT_ID, CLIENT_SECRET, clock=lambda: FROZEN_TIME).start()
    yield emulator
    emulator.stop()


@pytest.fixture
def client(emu: Emulator) -> Iterator[httpx.Client]:
    """An httpx client for the emulator that sends a User-Agent."""
    with httpx.Client(base_url=emu.url, headers=UA, timeout=10, verify=TLS) as http:
        yield http


def _device_code(client: httpx.Client) -> dict[str, Any]:
    response = client.post("/oauth/device/code", json={"client_id": CLIENT_ID})
    assert response.status_code == 200
    return cast(dict[str, Any], response.json())


def _poll(client: httpx.Client, code: str, secret: str = CLIENT_SECRET) -> httpx.Response:
    return client.post(
        "/oauth/device/token", json={"code": code, "client_id": CLIENT_ID, "client_secret": secret}
    )


def _refresh(
    client: httpx.Client, refresh_token: str, secret: str = CLIENT_SECRET
) -> httpx.Response:
    return client.post(
        "/oauth/token",
        json={
            "refresh_token": refresh_token,
            "client_id": CLIENT_ID,
            "client_secret": secret,
            "redirect_uri": OOB,
            "grant_type": "refresh_token",
        },
    )


def _probe(client: httpx.Client, access_token: str) -> httpx.Response:
    return client.get(
        "/users/settings",
        headers={
            "trakt-api-key": CLIENT_ID,
            "trakt-api-version": "2",
            "Authorization": f"Bearer {access_token}",
        },
    )


def _seed(emu: Emulator, user: str = "alice") -> dict[str, Any]:
    return cast(dict[str, Any], emu.seed_grant(user))


def _assert_token_response(body: dict[str, Any], now: int, ttl: int = ACCESS_TTL) -> None:
    assert set(body) == {
        "access_token",
        "token_type",
        "expires_in",
        "refresh_token",
        "scope",
        "created_at",
    }
    assert HEX64.fullmatch(body["access_token"])
    assert HEX64.fullmatch(body["refresh_token"])
    assert body["token_type"] == "bearer"
    assert body["scope"] == "public"
    assert body["expires_in"] == ttl
    assert body["created_at"] == now


def _assert_app_headers(response: httpx.Response, *, no_store: bool = True) -> None:
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    assert response.headers["x-request-id"]
    assert float(response.headers["x-runtime"]) >= 0
    if no_store:
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["pragma"] == "no-cache"


def _read_all(response: httpx.Response, sink: bytearray) -> None:
    for chunk in response.iter_raw():
        sink.extend(chunk)


# -- device flow (E1, E2) -----------------------------------------------------------------


def test_device_code_response_shape(emu: Emulator, client: httpx.Client) -> None:
    """A known client gets a device code, an 8-character user code and the default timings."""
    response = client.post("/oauth/device/code", json={"client_id": CLIENT_ID})
    body = response.json()
    assert response.status_code == 200
    _assert_app_headers(response)
    assert HEX64.fullmatch(body["device_code"])
    assert re.fullmatch(r"[A-Z0-9]{8}", body["user_code"])
    assert body["verification_url"] == "https://trakt.tv/activate"
    assert (body["expires_in"], body["interval"]) == (600, 5)
    assert emu.state()["pending"] == [body["user_code"]]


def test_device_code_unknown_client_and_bad_json(client: httpx.Client) -> None:
    """An unknown client_id gets an empty 403; a body that is not JSON gets a 400."""
    unknown = client.post("/oauth/device/code", json={"client_id": "nope"})
    assert (unknown.status_code, unknown.content) == (403, b"")
    malformed = client.post(
        "/oauth/device/code", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert malformed.status_code == 400
    assert malformed.json()["error"] == "invalid_request"


def test_device_token_pending_is_empty_400(client: httpx.Client) -> None:
    """Before approval the poll answers 400 with an empty, non-JSON body."""
    code = _device_code(client)["device_code"]
    response = _poll(client, code)
    assert (response.status_code, response.content) == (400, b"")


def test_device_token_polling_too_fast_is_429(emu: Emulator, client: httpx.Client) -> None:
    """A second poll within the interval gets an empty 429; one after the interval is fine."""
    code = _device_code(client)["device_code"]
    assert _poll(client, code).status_code == 400
    fast = _poll(client, code)
    assert (fast.status_code, fast.content) == (429, b"")
    assert "retry-after" not in fast.headers
    emu.advance_clock(5)
    assert _poll(client, code).status_code == 400


def test_device_token_approved_then_reused(emu: Emulator, client: httpx.Client) -> None:
    """After approve() the poll returns a token response once, then 409 for the used code."""
    device = _device_code(client)
    emu.approve(device["user_code"], user="bob")
    response = _poll(client, device["device_code"])
    assert response.status_code == 200
    _assert_app_headers(response)
    _assert_token_response(response.json(), emu.now())
    emu.advance_clock(5)
    reused = _poll(client, device["device_code"])
    assert (reused.status_code, reused.content) == (409, b"")
    grants = cast(list[dict[str, Any]], emu.state()["grants"])
    assert [grant["user"] for grant in grants] == ["bob"]
    assert emu.counters()["device_token_success"] == 1


def test_device_token_expired_is_410(emu: Emulator, client: httpx.Client) -> None:
    """A code polled after created + expires_in gets an empty 410, even if approved."""
    device = _device_code(client)
    emu.approve(device["user_code"])
    emu.advance_clock(601)
    response = _poll(client, device["device_code"])
    assert (response.status_code, response.content) == (410, b"")


def test_device_token_denied_is_418(emu: Emulator, client: httpx.Client) -> None:
    """A code the user denied gets an empty 418."""
    device = _device_code(client)
    emu.deny(device["user_code"])
    response = _poll(client, device["device_code"])
    assert (response.status_code, response.content) == (418, b"")


def test_device_token_unknown_code_and_bad_client(client: httpx.Client) -> None:
    """An unknown code is 404; wrong credentials are 401 invalid_client, checked first."""
    unknown = _poll(client, "0" * 64)
    assert (unknown.status_code, unknown.content) == (404, b"")
    wrong = _poll(client, "0" * 64, secret="wrong")
    assert wrong.status_code == 401
    assert wrong.json()["error"] == "invalid_client"


def test_auto_approve_after_polls(emu: Emulator, client: httpx.Client) -> None:
    """With auto_approve_after_polls=1 the second poll succeeds for user "demo"."""
    emu.configure(auto_approve_after_polls=1)
    code = _device_code(client)["device_code"]
    assert _poll(client, code).status_code == 400
    emu.advance_clock(5)
    assert _poll(client, code).status_code == 200
    grants = cast(list[dict[str, Any]], emu.state()["grants"])
    assert grants[0]["user"] == "demo"


# -- refresh (E4, E5) ---------------------------------------------------------------------


def test_refresh_rotates_the_pair(emu: Emulator, client: httpx.Client) -> None:
    """A refresh returns a new access and refresh token; the old refresh token is dead at once."""
    seeded = _seed(emu)
    emu.advance_clock(100)
    response = _refresh(client, seeded["refresh_token"])
    body = response.json()
    assert response.status_code == 200
    _assert_app_headers(response)
    _assert_token_response(body, emu.now())
    assert body["access_token"] != seeded["access_token"]
    assert body["refresh_token"] != seeded["refresh_token"]
    again = _refresh(client, seeded["refresh_token"])
    assert again.status_code == 400
    assert again.json() == {"error": "invalid_grant", "error_description": "session not found"}
    assert _refresh(client, body["refresh_token"]).status_code == 200
    grant = cast(list[dict[str, Any]], emu.state()["grants"])[0]
    assert seeded["refresh_token"] in grant["rotated_refresh_tokens"]
    assert seeded["access_token"] in grant["rotated_access_tokens"]
    assert emu.counters()["refresh_success"] == 2
    assert emu.counters()["invalid_grant"] == 1


def test_concurrent_double_spend_gets_one_success(emu: Emulator) -> None:
    """Two simultaneous refreshes with the same token: exactly one 200, the other invalid_grant."""
    for _ in range(10):
        token = _seed(emu)["refresh_token"]
        barrier = threading.Barrier(2)
        results: list[httpx.Response] = []

        def spend(
            refresh_token: str = token,
            gate: threading.Barrier = barrier,
            sink: list[httpx.Response] = results,
        ) -> None:
            with httpx.Client(base_url=emu.url, headers=UA, timeout=10, verify=TLS) as http:
                gate.wait()
                sink.append(_refresh(http, refresh_token))

        threads = [threading.Thread(target=spend) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(r.status_code for r in results) == [200, 400]
        loser = next(r for r in results if r.status_code == 400)
        assert loser.json()["error"] == "invalid_grant"


def test_refresh_client_errors(emu: Emulator, client: httpx.Client) -> None:
    """Wrong secret is 401 invalid_client (400 in migration mode); bad bodies are 400."""
    token = _seed(emu)["refresh_token"]
    wrong = _refresh(client, token, secret="wrong")
    assert (wrong.status_code, wrong.json()["error"]) == (401, "invalid_client")
    emu.configure(migration_mode_400=True)
    assert _refresh(client, token, secret="wrong").status_code == 400
    missing = client.post("/oauth/token", json={"refresh_token": token})
    assert missing.status_code == 400
    assert missing.json()["error"] == "invalid_request"
    assert "grant_type" in missing.json()["error_description"]
    malformed = client.post(
        "/oauth/token",
        content=b"grant_type=refresh_token",
        headers={"Content-Type": "application/json"},
    )
    assert malformed.json()["error"] == "invalid_request"
    unsupported = client.post("/oauth/token", json={"grant_type": "password"})
    assert unsupported.json()["error"] == "unsupported_grant_type"
    assert _refresh(client, token).status_code == 200


def test_legacy_refresh_token_variants(emu: Emulator, client: httpx.Client) -> None:
    """A legacy token gets "session not found", or the Doorkeeper text, or the 2019-style 401."""
    token = _seed(emu)["refresh_token"]
    emu.mark_legacy(token)
    assert _refresh(client, token).json()["error_description"] == "session not found"
    emu.configure(legacy_doorkeeper_text=True)
    assert (
        _refresh(client, token)
        .json()["error_description"]
        .startswith("The provided authorization grant is invalid")
    )
    emu.configure(legacy_401=True)
    response = _refresh(client, token)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith(
        'Bearer realm="Doorkeeper", error="invalid_grant"'
    )
    assert emu.counters()["invalid_grant"] == 3


def test_reuse_revokes_family_and_refresh_ttl(emu: Emulator, client: httpx.Client) -> None:
    """Replaying a rotated token kills the grant if asked; refresh_ttl expires refresh tokens."""
    emu.configure(reuse_revokes_family=True)
    old = _seed(emu)["refresh_token"]
    new = _refresh(client, old).json()["refresh_token"]
    assert _refresh(client, old).status_code == 400
    assert _refresh(client, new).status_code == 400
    emu.configure(reuse_revokes_family=False, refresh_ttl=3600)
    token = _seed(emu, "carol")["refresh_token"]
    emu.advance_clock(3600)
    assert _refresh(client, token).status_code == 400


def test_old_access_token_after_refresh(emu: Emulator, client: httpx.Client) -> None:
    """The previous access token stays valid by default and dies with the option set."""
    seeded = _seed(emu)
    _refresh(client, seeded["refresh_token"])
    assert _probe(client, seeded["access_token"]).status_code == 200
    emu.configure(revoke_old_access_on_refresh=True)
    second = _seed(emu, "dave")
    _refresh(client, second["refresh_token"])
    assert _probe(client, second["access_token"]).status_code == 401


def test_several_clients_are_isolated(emu: Emulator, client: httpx.Client) -> None:
    """A refresh token only works for the client it was issued to; public clients need no secret."""
    emu.add_client("other", "other-secret")
    emu.add_client("public", None)
    token = emu.seed_grant("kim", client_id="other")["refresh_token"]
    assert _refresh(client, str(token)).json()["error"] == "invalid_grant"
    other = client.post(
        "/oauth/token",
        json={
            "refresh_token": token,
            "client_id": "other",
            "client_secret": "other-secret",
            "redirect_uri": OOB,
            "grant_type": "refresh_token",
        },
    )
    assert other.status_code == 200
    code = client.post("/oauth/device/code", json={"client_id": "public"}).json()["device_code"]
    assert (
        client.post("/oauth/device/token", json={"code": code, "client_id": "public"}).status_code
        == 400
    )


# -- authorization code (E3) ----------------------------------------------------------------


def test_authorization_code_with_pkce(emu: Emulator, client: httpx.Client) -> None:
    """A PKCE code exchange works without a secret, exactly once, with the exact redirect URI."""
    verifier = "v" * 43
    digest = hashlib.sha256(verifier.encode()).digest()
    challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    code = emu.authorize("erin", "http://localhost/cb", code_challenge=challenge)
    base = {"client_id": CLIENT_ID, "grant_type": "authorization_code", "code": code}
    wrong_uri = client.post(
        "/oauth/token",
        json={**base, "redirect_uri": "http://LOCALHOST/cb", "code_verifier": verifier},
    )
    assert wrong_uri.json()["error"] == "invalid_grant"
    bad_verifier = client.post(
        "/oauth/token",
        json={**base, "redirect_uri": "http://localhost/cb", "code_verifier": "w" * 43},
    )
    assert bad_verifier.status_code == 400
    good = client.post(
        "/oauth/token",
        json={**base, "redirect_uri": "http://localhost/cb", "code_verifier": verifier},
    )
    assert good.status_code == 200
    _assert_token_response(good.json(), emu.now())
    replay = client.post(
        "/oauth/token",
        json={**base, "redirect_uri": "http://localhost/cb", "code_verifier": verifier},
    )
    assert replay.json()["error"] == "invalid_grant"


def test_the_authorize_page_redirects_with_a_single_use_pkce_code(
    emu: Emulator, client: httpx.Client
) -> None:
    """GET /oauth/authorize: the user approves; the code works once, with the exact URI and the
    verifier, and without a client secret."""
    redirect = "http://127.0.0.1:8765/callback"
    emu.configure(redirect_uris=f"{OOB} {redirect}", auto_approve_user="erin")
    verifier = "a" * 43
    digest = hashlib.sha256(verifier.encode()).digest()
    challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    query = {
        "response_type": "code",
        "client_id": CLIENT_ID,
        "redirect_uri": redirect,
        "state": "st4te",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    page = client.get("/oauth/authorize", params=query)
    assert page.status_code == 302
    location = httpx.URL(page.headers["location"])
    assert str(location).startswith(redirect + "?")
    assert location.params["state"] == "st4te"
    code = location.params["code"]
    base = {"client_id": CLIENT_ID, "grant_type": "authorization_code", "code": code}
    good = {**base, "redirect_uri": redirect, "code_verifier": verifier}
    assert client.post("/oauth/token", json={**good, "code_verifier": "b" * 43}).status_code == 400
    assert client.post("/oauth/token", json=good).status_code == 200
    assert client.post("/oauth/token", json=good).json()["error"] == "invalid_grant"


@pytest.mark.parametrize(
    ("change", "status", "error"),
    [
        ({"redirect_uri": "http://127.0.0.1:9999/callback"}, 400, None),  # not registered
        ({"redirect_uri": "http://127.0.0.1:8765/Callback"}, 400, None),  # case matters
        ({"client_id": "nobody"}, 400, None),
        ({"code_challenge_method": "plain"}, 302, "invalid_request"),  # S256 only
        ({"response_type": "token"}, 302, "unsupported_response_type"),
    ],
)
def test_the_authorize_page_refuses(
    emu: Emulator, client: httpx.Client, change: dict[str, str], status: int, error: str | None
) -> None:
    emu.configure(redirect_uris="http://127.0.0.1:8765/callback")
    query = {
        "response_type": "code",
        "client_id": CLIENT_ID,
        "redirect_uri": "http://127.0.0.1:8765/callback",
        "code_challenge": "c" * 43,
        "code_challenge_method": "S256",
        **change,
    }
    page = client.get("/oauth/authorize", params=query)
    assert page.status_code == status
    if error is None:
        assert "location" not in page.headers  # never redirect to an unchecked URI
    else:
        assert httpx.URL(page.headers["location"]).params["error"] == error


# -- revoke (E6) and the probe (E7) ---------------------------------------------------------


def test_revoke_then_probe_is_401(emu: Emulator, client: httpx.Client) -> None:
    """Revoke answers an empty 200; the access token then gets 401 and the refresh token dies."""
    seeded = _seed(emu)
    assert _probe(client, seeded["access_token"]).status_code == 200
    body = {"token": seeded["access_token"], "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    response = client.post("/oauth/revoke", json=body)
    assert (response.status_code, response.content) == (200, b"")
    probe = _probe(client, seeded["access_token"])
    assert probe.status_code == 401
    assert 'error="invalid_token"' in probe.headers["www-authenticate"]
    assert _refresh(client, seeded["refresh_token"]).status_code == 400
    unknown = client.post("/oauth/revoke", json={**body, "token": "f" * 64})
    assert unknown.status_code == 200
    wrong = client.post("/oauth/revoke", json={**body, "client_secret": "x"})
    assert wrong.status_code == 401


def test_revoke_can_spare_the_refresh_token(emu: Emulator, client: httpx.Client) -> None:
    """With revoke_kills_refresh off, only the access token dies."""
    emu.configure(revoke_kills_refresh=False)
    seeded = _seed(emu)
    client.post(
        "/oauth/revoke",
        json={
            "token": seeded["access_token"],
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
        },
    )
    assert _probe(client, seeded["access_token"]).status_code == 401
    assert _refresh(client, seeded["refresh_token"]).status_code == 200


def test_probe_endpoint_states(emu: Emulator, client: httpx.Client) -> None:
    """The probe checks the API key, then the bearer token's life, then the account lock."""
    seeded = _seed(emu)
    ok = _probe(client, seeded["access_token"])
    assert ok.status_code == 200
    assert ok.json()["user"]["username"] == "alice"
    no_key = client.get(
        "/users/settings", headers={"Authorization": f"Bearer {seeded['access_token']}"}
    )
    assert no_key.status_code == 403
    emu.lock_user("alice")
    locked = _probe(client, seeded["access_token"])
    assert locked.status_code == 423
    assert locked.headers["x-account-locked"] == "true"
    assert locked.headers["x-account-deactivated"] == "false"
    emu.lock_user("alice", locked=False)
    emu.advance_clock(ACCESS_TTL)
    assert _probe(client, seeded["access_token"]).status_code == 401


def test_expire_access_and_revoke_grant(emu: Emulator, client: httpx.Client) -> None:
    """expire_access kills access but not refresh; revoke_grant kills both."""
    seeded = _seed(emu)
    assert emu.expire_access("alice") == 1
    assert _probe(client, seeded["access_token"]).status_code == 401
    fresh = _refresh(client, seeded["refresh_token"]).json()
    assert _probe(client, fresh["access_token"]).status_code == 200
    emu.revoke_grant("alice")
    assert _probe(client, fresh["access_token"]).status_code == 401
    assert _refresh(client, fresh["refresh_token"]).status_code == 400
    with pytest.raises(KeyError):
        emu.revoke_grant("nobody")


def test_seed_grant_known_pair_already_due(emu: Emulator, client: httpx.Client) -> None:
    """A seeded pair with an old created_at is expired for the API yet still refreshable."""
    access, refresh = "a" * 64, "b" * 64
    now = emu.now()
    seeded = emu.seed_grant("frank", access, refresh, created_at=now - 86_400, expires_in=86_400)
    assert (seeded["access_token"], seeded["expires_at"]) == (access, now)
    assert _probe(client, access).status_code == 401
    assert _refresh(client, refresh).status_code == 200
    with pytest.raises(ValueError, match="already issued"):
        emu.seed_grant("frank", access, "c" * 64)


# -- edge layer (E0) and faults -------------------------------------------------------------


def test_missing_user_agent_gets_cloudflare_403(emu: Emulator) -> None:
    """No User-Agent: Cloudflare's HTML 403 without the Rails app's headers."""
    with httpx.Client(base_url=emu.url, timeout=10, verify=TLS) as bare:
        bare.headers.pop("User-Agent")
        response = bare.post("/oauth/device/code", json={"client_id": CLIENT_ID})
        assert response.status_code == 403
        assert response.headers["content-type"] == "text/html; charset=UTF-8"
        assert response.headers["server"] == "cloudflare"
        assert re.fullmatch(r"[0-9a-f]{16}-[A-Z]{3}", response.headers["cf-ray"])
        assert "x-request-id" not in response.headers
        assert "x-runtime" not in response.headers
        assert "Sorry, you have been blocked" in response.text
        emu.configure(cf_require_user_agent=False)
        assert bare.post("/oauth/device/code", json={"client_id": CLIENT_ID}).status_code == 200
    assert emu.counters()["cf_blocked"] == 1


@pytest.mark.parametrize(
    ("fault", "status", "content_type", "app"),
    [
        ({"kind": "status", "code": 500}, 500, "application/json; charset=utf-8", True),
        ({"kind": "status", "code": 502}, 502, "text/html; charset=UTF-8", False),
        ({"kind": "status", "code": 503}, 503, "text/html; charset=UTF-8", False),
        ({"kind": "status", "code": 504}, 504, "text/html; charset=UTF-8", False),
        ({"kind": "cloudflare", "code": 520}, 520, "text/html; charset=UTF-8", False),
        ({"kind": "cloudflare", "code": 522}, 522, "text/html; charset=UTF-8", False),
        ({"kind": "cloudflare", "code": 524}, 524, "text/html; charset=UTF-8", False),
        ({"kind": "html"}, 200, "text/html; charset=UTF-8", False),
        ({"kind": "body", "body": '{"access_token": 1}'}, 200, "application/json", True),
    ],
)
def test_canned_faults(
    emu: Emulator,
    client: httpx.Client,
    fault: dict[str, Any],
    status: int,
    content_type: str,
    app: bool,
) -> None:
    """Each canned fault answers once with its status and content type, then the app is back."""
    seeded = _seed(emu)
    emu.add_fault(fault)
    response = _refresh(client, seeded["refresh_token"])
    assert response.status_code == status
    assert response.headers["content-type"] == content_type
    assert ("x-request-id" in response.headers) is app
    assert _refresh(client, seeded["refresh_token"]).status_code == 200
    log = emu.requests("/oauth/token")
    assert log[0]["fault"] == fault["kind"]
    assert log[0]["status"] == status


def test_status_fault_json_body_and_headers(emu: Emulator, client: httpx.Client) -> None:
    """A 500 fault has a JSON body and can carry X-Error-Message and Retry-After."""
    emu.add_fault({"kind": "status", "code": 503, "retry_after": 30})
    emu.add_fault({"kind": "status", "code": 500, "error_message": "boom"})
    assert client.get("/users/settings").headers["retry-after"] == "30"
    response = client.get("/users/settings")
    assert response.json()["error"] == "server_error"
    assert response.headers["x-error-message"] == "boom"


def test_ratelimit_faults(emu: Emulator, client: httpx.Client) -> None:
    """The rate-limit fault is terse text with Retry-After, or the 1015 page without it."""
    emu.add_fault({"kind": "ratelimit", "retry_after": 143})
    emu.add_fault({"kind": "ratelimit", "retry_after": None})
    text = client.post("/oauth/device/code", json={"client_id": CLIENT_ID})
    assert text.status_code == 429
    assert text.headers["content-type"] == "text/plain; charset=UTF-8"
    assert text.headers["retry-after"] == "143"
    assert text.headers["content-length"] == "16"
    assert "x-ratelimit" not in text.headers
    page = client.post("/oauth/device/code", json={"client_id": CLIENT_ID})
    assert page.status_code == 429
    assert "retry-after" not in page.headers
    assert "Error 1015" in page.text
    assert "banned you temporarily" in page.text


def test_huge_fault(emu: Emulator, client: httpx.Client) -> None:
    """The huge fault returns a valid 5 MiB JSON body."""
    emu.add_fault({"kind": "huge"})
    response = client.get("/users/settings")
    assert response.status_code == 200
    assert len(response.content) == 5 * 1024 * 1024
    assert json.loads(response.content)["padding"].startswith("xxx")


def test_drop_and_truncate_faults(emu: Emulator, client: httpx.Client) -> None:
    """drop closes without a response; truncate sends less than Content-Length promises."""
    emu.add_fault({"kind": "drop"})
    with pytest.raises(httpx.RemoteProtocolError):
        client.get("/users/settings")
    emu.add_fault({"kind": "truncate"})
    with pytest.raises(httpx.RemoteProtocolError):
        client.get("/users/settings")
    assert client.get("/users/settings").status_code == 403
    statuses = [entry["status"] for entry in emu.requests()]
    assert statuses == [None, 200, 403]


def test_delay_fault_then_normal_answer(emu: Emulator, client: httpx.Client) -> None:
    """A delay fault holds the request, then the app answers it normally."""
    emu.add_fault({"kind": "delay", "seconds": 0.3})
    response = client.post("/oauth/device/code", json={"client_id": CLIENT_ID})
    assert response.status_code == 200
    emu.add_fault({"kind": "delay", "seconds": 5})
    with pytest.raises(httpx.ReadTimeout):
        client.get("/users/settings", timeout=0.2)


def test_trickle_fault_is_slow_and_bounded(emu: Emulator, client: httpx.Client) -> None:
    """Trickle sends headers at once, then a byte per interval, and cuts the body at its bound."""
    emu.add_fault({"kind": "trickle", "interval": 0.1, "max_seconds": 0.5})
    received = bytearray()
    with client.stream("GET", "/users/settings") as response:
        assert response.status_code == 200
        assert int(response.headers["content-length"]) == 128
        with pytest.raises(httpx.RemoteProtocolError):
            _read_all(response, received)
    # cut short by max_seconds: some bytes came, never the whole body
    assert 1 <= len(received) < 128


def test_fault_path_filter_and_count(emu: Emulator, client: httpx.Client) -> None:
    """A fault only hits matching paths and fires `count` times; bad faults are rejected."""
    emu.add_fault({"kind": "status", "code": 503, "path": "/oauth/token", "count": 2})
    assert client.post("/oauth/device/code", json={"client_id": CLIENT_ID}).status_code == 200
    token = _seed(emu)["refresh_token"]
    assert _refresh(client, token).status_code == 503
    assert emu.state()["faults"] == [
        {
            "kind": "status",
            "path": "/oauth/token",
            "count": 1,
            "code": 503,
            "retry_after": None,
            "error_message": None,
        }
    ]
    assert _refresh(client, token).status_code == 503
    assert _refresh(client, token).status_code == 200
    with pytest.raises(ValueError, match="fault kind"):
        emu.add_fault({"kind": "meteor"})
    with pytest.raises(ValueError, match="unknown keys"):
        emu.add_fault({"kind": "drop", "cde": 1})
    emu.add_fault({"kind": "drop"})
    emu.clear_faults()
    assert emu.state()["faults"] == []


# -- inspection, lifecycle, routing ---------------------------------------------------------


def test_request_log_records_requests_not_control(emu: Emulator, client: httpx.Client) -> None:
    """Each app request is logged with headers, parsed body and status; control calls are not."""
    client.post("/oauth/device/code", json={"client_id": CLIENT_ID})
    client.post("/oauth/device/code", content=b"raw text")
    EmulatorControl(emu.url).state()
    log = emu.requests()
    assert [entry["status"] for entry in log] == [200, 400]
    assert log[0]["method"] == "POST"
    assert log[0]["path"] == "/oauth/device/code"
    assert log[0]["body"] == {"client_id": CLIENT_ID}
    assert cast(dict[str, str], log[0]["headers"])["user-agent"] == UA["User-Agent"]
    assert log[1]["body"] == "raw text"
    assert log[0]["time"] == emu.now()
    assert emu.counters()["requests"] == 2


def test_routing_and_options(emu: Emulator, client: httpx.Client) -> None:
    """Unknown paths are 404, wrong methods 405, and bad options raise ValueError."""
    assert client.get("/nope").status_code == 404
    assert client.get("/oauth/token").status_code == 405
    assert (
        client.post(
            "/sync/history", content=b"x", headers={"Content-Type": "text/plain"}
        ).status_code
        == 412
    )
    assert emu.auth_url == emu.api_url == emu.url
    with pytest.raises(ValueError, match="unknown option"):
        emu.configure(acess_ttl=5)
    with pytest.raises(ValueError, match="access_ttl"):
        emu.configure(access_ttl=-1)
    emu.set_ttl(86_400)
    assert _refresh(client, _seed(emu)["refresh_token"]).json()["expires_in"] == 86_400


def test_manual_clock() -> None:
    """A manual clock source fixes created_at; advance_clock adds to it."""
    with Emulator(CLIENT_ID, CLIENT_SECRET, clock=lambda: 1_000_000.5) as emulator:
        assert emulator.now() == 1_000_000
        emulator.advance_clock(60)
        assert emulator.now() == 1_000_060
        assert emulator.seed_grant("gina")["created_at"] == 1_000_060
        with pytest.raises(ValueError, match="forward"):
            emulator.advance_clock(-1)


def test_stop_is_quick_and_leaves_no_threads() -> None:
    """stop() returns promptly even while a request sleeps in a fault or a control call waits."""
    emulator = Emulator(CLIENT_ID, CLIENT_SECRET).start()
    emulator.add_fault({"kind": "delay", "seconds": 30})
    errors: list[BaseException] = []

    def hang() -> None:
        try:
            with httpx.Client(base_url=emulator.url, headers=UA, timeout=30, verify=TLS) as http:
                http.get("/users/settings")
        except httpx.HTTPError as exc:
            errors.append(exc)

    def wait_for_login() -> None:
        try:
            EmulatorControl(emulator.url).wait_for_user_code(timeout=30)
        except (OSError, TimeoutError) as exc:
            errors.append(exc)

    callers = [threading.Thread(target=hang), threading.Thread(target=wait_for_login)]
    for caller in callers:
        caller.start()
    deadline = time.monotonic() + 5
    while not emulator.requests() and time.monotonic() < deadline:
        time.sleep(0.01)
    emulator.stop()
    for caller in callers:
        caller.join(5)
    assert len(errors) == 2
    assert not [t for t in threading.enumerate() if t.name.startswith("trakt-emulator")]
    assert emulator.errors == []


# -- control API over HTTP ------------------------------------------------------------------


def test_control_api_round_trip(emu: Emulator, client: httpx.Client) -> None:
    """EmulatorControl drives the same hooks over HTTP, mapping errors to KeyError/ValueError."""
    control = EmulatorControl(emu.url)
    assert control.health()
    device = _device_code(client)
    assert control.wait_for_user_code(timeout=1) == device["user_code"]
    control.approve(device["user_code"], user="henry")
    token = _poll(client, device["device_code"]).json()
    assert cast(list[dict[str, Any]], control.state()["grants"])[0]["user"] == "henry"
    before = control.now()
    control.advance_clock(3600)
    assert control.now() >= before + 3600
    control.set_ttl(7_776_000)
    control.configure(legacy_doorkeeper_text=False)
    added = control.add_fault({"kind": "cloudflare", "code": 521})
    assert added["code"] == 521
    assert _refresh(client, token["refresh_token"]).status_code == 521
    fresh = _refresh(client, token["refresh_token"]).json()
    assert fresh["expires_in"] == 7_776_000
    control.mark_legacy(fresh["refresh_token"])
    assert _refresh(client, fresh["refresh_token"]).status_code == 400
    seeded = control.seed_grant("ivy", "d" * 64, "e" * 64, created_at=before, expires_in=60)
    assert seeded["expires_at"] == before + 60
    control.lock_user("ivy")
    assert control.expire_access("ivy") == 1
    assert control.revoke_grant("ivy") == 1
    code = control.authorize("ivy", "http://localhost/cb")
    assert re.fullmatch(r"[0-9a-f]{64}", code)
    control.add_client("other", "other-secret")
    control.clear_faults()
    with pytest.raises(KeyError):
        control.approve("NOPE1234")
    with pytest.raises(ValueError, match="unknown option"):
        control.configure(bogus=True)
    with pytest.raises(ValueError, match="fault kind"):
        control.add_fault({"kind": "nope"})
    control.reset()
    assert control.state()["grants"] == []
    assert emu.requests() == []


# -- command line ---------------------------------------------------------------------------


def test_cli_starts_prints_and_stops_on_sigterm(tmp_path: Path) -> None:
    """The CLI prints one listening line, writes the port file and exits 0 on SIGTERM."""
    port_file = tmp_path / "url"
    env = {**os.environ, "TRAKT_EMULATOR_CLIENT_SECRET": CLIENT_SECRET}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "trakt_emulator",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--client-id",
            CLIENT_ID,
            "--ttl",
            "86400",
            "--auto-approve-after-polls",
            "0",
            "--port-file",
            str(port_file),
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        control = EmulatorControl.from_port_file(port_file, timeout=10)
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line == f"trakt-emulator listening on {control.url}\n"
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", control.url)
        with httpx.Client(base_url=control.url, headers=UA, timeout=10, verify=TLS) as http:
            code = http.post("/oauth/device/code", json={"client_id": CLIENT_ID}).json()
            token = _poll(http, code["device_code"])
        assert token.status_code == 200
        assert token.json()["expires_in"] == 86_400
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0
    output = line + stdout + stderr
    assert CLIENT_SECRET not in output
    assert token.json()["access_token"] not in output
    assert stdout == ""


def test_the_activation_page_approves_a_code_by_hand(emu: Emulator, client: httpx.Client) -> None:
    """The form lists waiting codes; posting one approves it, as trakt.tv/activate would."""
    code = _device_code(client)
    page = client.get("/activate")

    assert page.status_code == 200
    assert code["user_code"] in page.text
    assert f"{emu.url}/_emulator/approve" in page.text
    assert _poll(client, code["device_code"]).status_code == 400  # still pending

    wrong = client.post("/activate", data={"user_code": "NOPE1234"})
    approved = client.post("/activate", data={"user_code": code["user_code"].lower()})

    assert "No pending code" in wrong.text
    assert f"Approved {code['user_code']}" in approved.text
    emu.advance_clock(code["interval"])  # the next poll may come after one interval
    assert _poll(client, code["device_code"]).status_code == 200


def test_help_shows_the_control_api_and_the_defaults() -> None:
    """`python -m trakt_emulator --help` is enough to use it without reading its source."""
    from trakt_emulator.__main__ import build_parser  # noqa: PLC0415
    from trakt_emulator.emulator import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET  # noqa: PLC0415

    text = build_parser().format_help()

    assert DEFAULT_CLIENT_ID in text
    assert DEFAULT_CLIENT_SECRET in text
    assert 'curl -X POST -d \'{"user_code": "CODE"}\' URL/_emulator/approve' in text
    assert "URL/activate" in text
    assert 'auth_url = "http://127.0.0.1:8085"' in text


def test_the_command_points_the_verification_url_at_itself(tmp_path: Path) -> None:
    """Run as a program, the device flow's verification URL is the emulator's own page."""
    port_file = tmp_path / "url"
    process = subprocess.Popen(
        [sys.executable, "-m", "trakt_emulator", "--port-file", str(port_file)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        control = EmulatorControl.from_port_file(port_file, timeout=30)
        with httpx.Client(base_url=control.url, headers=UA, timeout=10, verify=TLS) as http:
            device = http.post(
                "/oauth/device/code", json={"client_id": "tvmaniac-emulator-client"}
            ).json()
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)

    assert device["verification_url"] == f"{control.url}/activate"
