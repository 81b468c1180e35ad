"""provider = "oauth2" against a real third-party server: npm oidc-provider (panva), with the
real command, the real keyring, and the daemon. Introspection is the server's own verdict."""

from __future__ import annotations

import json
import re
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.support.harness import Harness, Run, wait_until
from tests.support.oidc_server import (
    DEVICE_GRANT,
    MOUNTED_ROUTES,
    TOKEN_QUERY,
    OidcClient,
    OidcServer,
)

AT_TTL = 20  # seconds: due for refresh after 10 s, so the daemon rotates often


def oauth2_config(server: OidcServer, client: OidcClient, **extra: str) -> str:
    lines = [
        "[accounts.default]",
        'provider = "oauth2"',
        f'client_id = "{client.client_id}"',
        f'token_url = "{server.token_url}"',
        f'device_authorization_url = "{server.device_authorization_url}"',
        f'authorization_url = "{server.authorization_url}"',
        f'revocation_url = "{server.revocation_url}"',
        'scopes = ["openid", "offline_access"]',
        f'client_auth = "{client.auth_method}"',
    ]
    if client.client_secret:
        lines.append(f'client_secret = "{client.client_secret}"')
    lines += [f"{key} = {value}" for key, value in extra.items()]
    lines += ["[daemon]", 'tick = "1s"', "[retry]", 'initial = "1s"', 'maximum = "2s"']
    lines += ["[alerts]", "desktop = false", "[http]", 'read_timeout = "5s"']
    return "\n".join(lines) + "\n"


@pytest.fixture
def oidc() -> Iterator[OidcServer]:
    with OidcServer(access_token_ttl=AT_TTL) as server:
        yield server


@pytest.fixture
def rig(harness: Harness, oidc: OidcServer) -> Harness:
    harness.extra_secrets |= {c.client_secret for c in oidc.clients if c.client_secret}
    harness.write_config(oauth2_config(oidc, oidc.basic_client))
    return harness


def stored_tokens(rig: Harness) -> dict[str, object]:
    stored = rig.stored()
    assert stored is not None
    rig.extra_secrets |= {str(stored["access_token"]), str(stored["refresh_token"])}
    return stored


def login_by_device(rig: Harness, oidc: OidcServer, *args: str) -> Run:
    """Run `login`, read the user code it prints, approve it at the server as the user."""
    process = rig.spawn("login", *args)
    assert process.stdout is not None
    seen = []
    for line in process.stdout:
        seen.append(line)
        found = re.search(r"enter the code: (\S+)", line)
        if found:
            oidc.approve_device(found.group(1))
            break
    out, err = process.communicate(timeout=60)
    run = Run(("login",), process.returncode, "".join(seen) + out, err)
    rig.transcript.append(run)
    return run


def login_by_browser(rig: Harness, oidc: OidcServer) -> tuple[Run, str, str]:
    """Run `login --browser`, play the browser at the URL it prints (login and consent at the
    server); return the run, that URL, and where the server redirected the browser."""
    process = rig.spawn("login", "--browser")
    assert process.stdout is not None
    url = ""
    for line in process.stdout:
        if line.strip().startswith("http"):
            url = line.strip()
            break
    # The printed link is our listener's start page: it sends the browser on, once.
    started = httpx.get(url, timeout=30)
    assert started.status_code == 302, started.text
    url = started.headers["location"]
    redirect = oidc.authorize(url)
    httpx.get(redirect, timeout=30)
    out, err = process.communicate(timeout=60)
    run = Run(("login", "--browser"), process.returncode, out, err)
    rig.transcript.append(run)
    return run, url, redirect


class TestLogin:
    @pytest.mark.parametrize("kind", ["basic", "post", "public"])
    def test_device_login_into_the_real_keyring(
        self, rig: Harness, oidc: OidcServer, kind: str
    ) -> None:
        """RFC 8628 login with each client authentication; the server calls the token active."""
        client = {
            "basic": oidc.basic_client,
            "post": oidc.post_client,
            "public": oidc.public_client,
        }
        rig.write_config(oauth2_config(oidc, client[kind]))
        run = login_by_device(rig, oidc)

        assert run.code == 0, run.err
        stored = stored_tokens(rig)
        assert stored["expires_in"] == AT_TTL
        assert oidc.introspect(str(stored["access_token"]))["active"] is True

    def test_browser_login_with_pkce(self, rig: Harness, oidc: OidcServer) -> None:
        """The loopback flow: the URL is printed, the 'browser' (httpx) follows it, tokens land."""
        run, url, redirect = login_by_browser(rig, oidc)

        assert redirect.startswith("http://127.0.0.1:")
        assert run.code == 0, run.err
        assert "code_challenge_method=S256" in url
        # Who logged in, from the ID token's sub (this server sends no preferred_username);
        # the server logs its interactions in as "alice".
        assert "Logged in as 'alice'" in run.out
        status = json.loads(rig.run("status", "--json").out)
        assert status["accounts"][0]["logged_in_as"] == "alice"
        assert oidc.introspect(str(stored_tokens(rig)["access_token"]))["active"] is True


class TestSession:
    def test_token_is_valid_at_the_server(self, rig: Harness, oidc: OidcServer) -> None:
        """`token` prints an access token the server's introspection accepts."""
        assert login_by_device(rig, oidc).code == 0
        run = rig.run("token")

        assert run.code == 0
        assert oidc.introspect(run.out.strip())["active"] is True

    def test_parallel_token_refreshes_once_and_keeps_the_grant(
        self, rig: Harness, oidc: OidcServer
    ) -> None:
        """Ten `token` processes that all want a refresh: no refresh token is presented twice,
        so oidc-provider's reuse detection never revokes the grant."""
        assert login_by_device(rig, oidc).code == 0
        # Every process wants a refresh because the token is due by the policy, so one that
        # starts after the first refresh finds a pair that is not due and takes it, rather than
        # refreshing again (as `--min-valid` of the whole lifetime would, a second later).
        wait_until(
            lambda: '"refresh_due"' in rig.run("status", "--json").out,
            timeout=30,
            what="the 20-second token to fall due",
        )
        processes = [rig.spawn("token") for _ in range(10)]
        runs = [rig.finish(process, ("token",)) for process in processes]

        assert [run.code for run in runs] == [0] * 10, [run.err for run in runs]
        assert len({run.out for run in runs}) == 1
        assert oidc.grant_errors == []
        assert oidc.introspect(runs[0].out.strip())["active"] is True
        assert rig.run("refresh", "--force").code == 0

    def test_daemon_rotates_repeatedly(
        self, rig: Harness, oidc: OidcServer, tmp_path: Path
    ) -> None:
        """The daemon refreshes the short-lived token several times; every rotation sticks."""
        assert login_by_device(rig, oidc).code == 0
        first = stored_tokens(rig)["refresh_token"]
        daemon = rig.spawn("run")
        refreshed = []
        assert daemon.stderr is not None

        def count() -> None:
            assert daemon.stderr is not None
            for line in daemon.stderr:
                refreshed.append(line)

        reader = threading.Thread(target=count, daemon=True)
        reader.start()
        wait_until(
            lambda: (
                sum("refresh.finished" in line and "refreshed" in line for line in refreshed) >= 3
            ),
            timeout=120,
            what="three refreshes by the daemon",
        )
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=30)
        reader.join(timeout=10)
        with daemon:  # closes its pipes
            pass
        rig.transcript.append(Run(("run",), daemon.returncode, "", "".join(refreshed)))

        assert daemon.returncode == 0
        stored = stored_tokens(rig)
        assert stored["refresh_token"] != first
        assert oidc.introspect(str(stored["refresh_token"]))["active"] is True
        assert oidc.grant_errors == []

    def test_logout_revokes_the_grant(self, rig: Harness, oidc: OidcServer) -> None:
        """RFC 7009 revocation of the refresh token: the server reports both tokens inactive."""
        assert login_by_device(rig, oidc).code == 0
        stored = stored_tokens(rig)
        run = rig.run("logout")

        assert run.code == 0, run.err
        assert rig.stored() is None
        assert oidc.introspect(str(stored["refresh_token"]))["active"] is False
        assert oidc.introspect(str(stored["access_token"]))["active"] is False

    def test_wrong_secret_is_a_configuration_problem(self, rig: Harness, oidc: OidcServer) -> None:
        """invalid_client exits 78 and leaves the session usable once the secret is fixed."""
        assert login_by_device(rig, oidc).code == 0
        stored_tokens(rig)
        good = rig.config_path.read_text()
        assert oidc.basic_client.client_secret is not None
        rig.write_config(good.replace(oidc.basic_client.client_secret, "wrong-secret-value"))
        run = rig.run("refresh", "--force")

        assert run.code == 78
        assert "client_id and client_secret" in run.err
        rig.write_config(good)
        assert rig.run("refresh", "--force").code == 0

    def test_rejected_refresh_token_needs_login(self, rig: Harness, oidc: OidcServer) -> None:
        """A grant revoked at the server: invalid_grant → reauth_required, exit 77."""
        assert login_by_device(rig, oidc).code == 0
        stored = stored_tokens(rig)
        httpx.post(
            oidc.revocation_url,
            data={"token": str(stored["refresh_token"]), **oidc.basic_client.form()},
            auth=oidc.basic_client.auth,
            timeout=30,
        ).raise_for_status()
        run = rig.run("refresh", "--force")

        assert run.code == 77
        assert "login" in run.err


@pytest.fixture(scope="module")
def mounted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcServer]:
    """One server for the module, mounted as Django/Rails servers are (paths end with '/'),
    its token endpoint requiring a query (B2C's ?p=), recording every POST it gets."""
    record = tmp_path_factory.mktemp("oidc-record") / "requests.jsonl"
    with OidcServer(
        access_token_ttl=AT_TTL, routes=MOUNTED_ROUTES, queries=TOKEN_QUERY, record_file=record
    ) as server:
        yield server


def expected_form(client: OidcClient, fields: dict[str, str], *, id_always: bool) -> dict[str, str]:
    """``fields`` (secret values as '*'), plus the client's own: client_id where the RFC
    example has it or the client does not use Basic, client_secret for client_secret_post."""
    form = dict(fields)
    if id_always or client.auth_method != "client_secret_basic":
        form["client_id"] = client.client_id
    if client.auth_method == "client_secret_post":
        form["client_secret"] = "*"
    return form


def rfc_shape(client: OidcClient, record: dict[str, object], redirect: str) -> dict[str, str]:
    """The form the RFC example shows for the request ``record`` is (by endpoint and grant)."""
    form = record["form"]
    assert isinstance(form, dict)
    target = str(record["target"])
    if target.startswith(MOUNTED_ROUTES["device_authorization"]):  # RFC 8628 §3.1
        return expected_form(client, {"scope": "openid offline_access"}, id_always=True)
    if target.startswith(MOUNTED_ROUTES["revocation"]):  # RFC 7009 §2.1
        fields = {"token": "*", "token_type_hint": "refresh_token"}
        return expected_form(client, fields, id_always=False)
    grant = form.get("grant_type")
    if grant == DEVICE_GRANT:  # RFC 8628 §3.4
        fields = {"grant_type": DEVICE_GRANT, "device_code": "*"}
        return expected_form(client, fields, id_always=True)
    if grant == "refresh_token":  # RFC 6749 §6, and §3.2.1's client_id
        fields = {"grant_type": "refresh_token", "refresh_token": "*"}
        return expected_form(client, fields, id_always=True)
    # RFC 6749 §4.1.3 with RFC 7636 §4.5
    fields = {
        "grant_type": "authorization_code",
        "code": "*",
        "redirect_uri": redirect,
        "code_verifier": "*",
    }
    return expected_form(client, fields, id_always=False)


class TestEndpointsAsConfigured:
    """Endpoints ending with '/' and a token endpoint with a query: the server answers 404 to
    a URL that lost either, so every step below passing means the URLs were used as written."""

    @pytest.mark.parametrize("kind", ["basic", "post", "public"])
    def test_login_refresh_revoke_with_rfc_shaped_requests(
        self, harness: Harness, mounted: OidcServer, kind: str
    ) -> None:
        """Device login, refresh, logout, browser login, logout: each works, and every request
        the server got has exactly the body fields the RFC examples show."""
        client = {
            "basic": mounted.basic_client,
            "post": mounted.post_client,
            "public": mounted.public_client,
        }[kind]
        harness.extra_secrets |= {c.client_secret for c in mounted.clients if c.client_secret}
        harness.write_config(oauth2_config(mounted, client))
        assert mounted.token_url.endswith("/o/token/?p=B2C_1_refreshd")
        seen_before = len(mounted.recorded_requests())

        assert login_by_device(harness, mounted).code == 0
        first = stored_tokens(harness)
        assert harness.run("refresh", "--force").code == 0
        second = stored_tokens(harness)
        assert second["refresh_token"] != first["refresh_token"]
        assert mounted.introspect(str(second["access_token"]))["active"] is True
        assert harness.run("logout").code == 0
        assert mounted.introspect(str(second["refresh_token"]))["active"] is False
        browser, url, _ = login_by_browser(harness, mounted)
        assert browser.code == 0, browser.err
        redirect_uri = httpx.URL(url).params["redirect_uri"]
        third = stored_tokens(harness)
        assert harness.run("logout").code == 0
        assert mounted.introspect(str(third["refresh_token"]))["active"] is False

        endpoints = {
            urlsplit(url).path: url.removeprefix(mounted.issuer)
            for url in (
                mounted.token_url,
                mounted.device_authorization_url,
                mounted.revocation_url,
            )
        }
        ours = [
            record
            for record in mounted.recorded_requests()[seen_before:]
            if urlsplit(str(record["target"])).path in endpoints
        ]
        kinds = [rfc_step(record) for record in ours]
        polls = kinds[1:-4]  # RFC 8628 §3.5: until the user has approved
        assert kinds[0] == "device_authorization"
        assert polls
        assert set(polls) == {"device_token"}
        assert kinds[-4:] == ["refresh_token", "revocation", "authorization_code", "revocation"]
        for record in ours:
            target = str(record["target"])
            assert target == endpoints[urlsplit(target).path]
            assert record["contentType"] == "application/x-www-form-urlencoded"
            assert record["form"] == rfc_shape(client, record, redirect_uri), record
            basic = client.auth_method == "client_secret_basic"
            assert record["basicClientId"] == (client.client_id if basic else None)
        assert [line for line in mounted.stderr_lines if line.startswith("query.error")] == []


def rfc_step(record: dict[str, object]) -> str:
    """Which request of the flows ``record`` is."""
    target = str(record["target"])
    form = record["form"]
    assert isinstance(form, dict)
    if target.startswith(MOUNTED_ROUTES["device_authorization"]):
        return "device_authorization"
    if target.startswith(MOUNTED_ROUTES["revocation"]):
        return "revocation"
    return {DEVICE_GRANT: "device_token"}.get(
        str(form.get("grant_type")), str(form.get("grant_type"))
    )


def test_an_oauth2_account_never_speaks_of_trakt(
    rig: Harness, oidc: OidcServer, tmp_path: Path
) -> None:
    """Every word an oauth2 account puts before the user (login, status, errors, the daemon's
    desktop notifications and hooks, logout's warning) names its own provider, never Trakt."""
    told = tmp_path / "told.txt"
    tools = tmp_path / "bin"
    tools.mkdir()
    recorder = f'#!/bin/sh\nprintf "%s|" "$(basename "$0")" "$@" >> "{told}"\necho >> "{told}"\n'
    (tools / "notify-send").write_text(recorder)
    (tools / "hook").write_text(
        f'#!/bin/sh\necho "hook|$TVMANIAC_REFRESHD_EVENT|$TVMANIAC_REFRESHD_MESSAGE" >> "{told}"\n'
    )
    for tool in tools.iterdir():
        tool.chmod(0o755)
    hook = f'["{tools / "hook"}"]'
    config = oauth2_config(oidc, oidc.basic_client).replace(
        "desktop = false",
        f"desktop = true\non_refreshed = {hook}\non_reauth_required = {hook}\non_error = {hook}",
    )
    rig.write_config(config)
    env = rig.env()
    env["PATH"] = f"{tools}:{env.get('PATH', '/usr/bin:/bin')}"

    assert login_by_device(rig, oidc).code == 0
    rig.run("status")
    rig.run("status", "--json")
    rig.run("config", "check")
    daemon = rig.spawn("run", env=env)
    wait_until(
        lambda: told.exists() and "hook|refreshed|" in told.read_text(),
        timeout=120,
        what="the daemon's first refresh",
    )
    httpx.post(
        oidc.revocation_url,
        data={"token": str(stored_tokens(rig)["refresh_token"]), **oidc.basic_client.form()},
        auth=oidc.basic_client.auth,
        timeout=30,
    ).raise_for_status()
    wait_until(
        lambda: "notify-send|" in told.read_text(), timeout=120, what="a login-needed notification"
    )
    daemon.send_signal(signal.SIGTERM)
    rig.finish(daemon, ("run",))
    rig.run("refresh", "--force")
    rig.run("status")
    # Revocation the server refuses: the warning says where to revoke by hand. (On the token
    # endpoint's own server: one of another origin is never sent the token, issue 13.)
    rig.write_config(config.replace(oidc.revocation_url, oidc.revocation_url + "-gone"))
    logout = rig.run("logout")

    notices = told.read_text()
    assert "login needed (default)" in notices
    assert "revoke the app by hand" in logout.err.lower()
    said = [notices] + [run.out + run.err for run in rig.transcript]
    assert [text for text in said if re.search("trakt", text, re.IGNORECASE)] == []
