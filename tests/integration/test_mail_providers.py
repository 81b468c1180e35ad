"""Google and Microsoft as they document themselves (tests/support/google_emulator.py and
microsoft_emulator.py), over loopback HTTP: first the provider code alone, then the real
command with the real keyring."""

from __future__ import annotations

import io
import re
import threading
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import httpx
import pytest

from tests.support.google_emulator import GMAIL_SCOPE, GoogleEmulator
from tests.support.harness import Harness, Run
from tests.support.microsoft_emulator import MicrosoftEmulator
from tvmaniac_refreshd.config.settings import (
    Account,
    HttpSettings,
    OAuth2Settings,
    parse_config,
    settings_of,
)
from tvmaniac_refreshd.core.errors import LoginFailed, ProviderRefused, SessionRejected
from tvmaniac_refreshd.core.tokens import TokenSet
from tvmaniac_refreshd.providers.base import PollState
from tvmaniac_refreshd.providers.browser_login import browser_login
from tvmaniac_refreshd.providers.http import make_http_client
from tvmaniac_refreshd.providers.oauth2 import OAuth2Client

TIMEOUTS = '[http]\nread_timeout = "10s"\n[alerts]\ndesktop = false\n'


@pytest.fixture
def google() -> Iterator[GoogleEmulator]:
    with GoogleEmulator() as running:
        yield running
        assert running.errors == []


@pytest.fixture
def microsoft() -> Iterator[MicrosoftEmulator]:
    with MicrosoftEmulator(tenant="consumers") as running:
        yield running
        assert running.errors == []


def gmail_config(google: GoogleEmulator, *, device: bool = False, **keys: str) -> str:
    """The browser flow: preset = "google" with the endpoints moved to the emulator, as in the
    README. The device flow: every key written out (for scopes Google allows there), as a
    config without a preset would have it, so the test shows what the code alone reads."""
    client = google.tv if device else google.desktop
    if device:
        lines = [
            "[accounts.default]",
            'provider = "oauth2"',
            'client_auth = "client_secret_post"',
            f'device_authorization_url = "{google.device_authorization_url}"',
            'scopes = ["openid", "email"]',
        ]
    else:
        lines = ["[accounts.default]", 'preset = "google"']
    lines += [
        f'client_id = "{client.client_id}"',
        f'client_secret = "{client.client_secret}"',
        f'token_url = "{google.token_url}"',
        f'authorization_url = "{google.authorization_url}"',
        f'revocation_url = "{google.revocation_url}"',
    ]
    lines += [f"{key} = {value}" for key, value in keys.items()]
    return "\n".join(lines) + "\n" + TIMEOUTS


def outlook_config(microsoft: MicrosoftEmulator) -> str:
    """What preset = "microsoft" fills in, written out (the preset is tested by the recipe)."""
    return (
        "[accounts.default]\n"
        'provider = "oauth2"\n'
        f'client_id = "{microsoft.client_id}"\n'
        'client_auth = "none"\n'
        f'token_url = "{microsoft.token_url}"\n'
        f'device_authorization_url = "{microsoft.device_authorization_url}"\n'
        'scopes = ["https://outlook.office.com/IMAP.AccessAsUser.All", '
        '"https://outlook.office.com/SMTP.Send", "offline_access"]\n' + TIMEOUTS
    )


def provider(text: str) -> OAuth2Client:
    account: Account = parse_config(text).select(None)
    return OAuth2Client(make_http_client(HttpSettings()), account, account.client_secret)


def with_params(account: Account, params: tuple[tuple[str, str], ...]) -> Account:
    """``account`` with other authorization_params: what a config without the preset sends."""
    settings = settings_of(account, OAuth2Settings)
    return replace(account, settings=replace(settings, authorization_params=params))


def browse(url: str) -> None:
    """The user's browser: our listener's start link, the provider's page (which consents),
    then the loopback redirect."""
    with httpx.Client(timeout=30) as browser:
        started = browser.get(url)
        assert started.status_code == 302, started.text
        consent = browser.get(started.headers["location"])
        assert consent.status_code == 302, consent.text
        browser.get(consent.headers["location"])


def in_background(url: str) -> None:
    threading.Thread(target=browse, args=(url,), daemon=True).start()


class TestGoogleProvider:
    def test_device_flow_as_google_documents_it(self, google: GoogleEmulator) -> None:
        """verification_url, 428 authorization_pending, 403 slow_down, then tokens."""
        client = provider(gmail_config(google, device=True))
        device = client.request_device_code(now=0)

        assert device.verification_url == "https://www.google.com/device"
        assert client.poll_device_token(device, now=0) is PollState.PENDING
        google.slow_down_polls = 1
        assert client.poll_device_token(device, now=0) is PollState.SLOW_DOWN
        google.approve_device(device.user_code)
        tokens = client.poll_device_token(device, now=0)
        assert isinstance(tokens, TokenSet)
        with pytest.raises(LoginFailed, match="no longer accepts this code"):
            client.poll_device_token(device, now=0)

    def test_refresh_keeps_the_refresh_token_and_revoke_ends_the_grant(
        self, google: GoogleEmulator
    ) -> None:
        client = provider(gmail_config(google, device=True))
        device = client.request_device_code(now=0)
        google.approve_device(device.user_code)
        tokens = client.poll_device_token(device, now=0)
        assert isinstance(tokens, TokenSet)

        refreshed = client.refresh(tokens.refresh_token, now=0)
        assert refreshed.refresh_token == tokens.refresh_token  # Google does not rotate
        assert refreshed.access_token != tokens.access_token
        client.revoke(refreshed, now=0)
        with pytest.raises(SessionRejected):
            client.refresh(tokens.refresh_token, now=0)

    def test_the_mail_scope_in_the_device_flow_says_how_to_go_on(
        self, google: GoogleEmulator
    ) -> None:
        """Google answers invalid_scope; the message names the browser flow (the config
        check refuses this combination, so the account is built by hand here)."""
        account = parse_config(gmail_config(google)).select(None)
        settings = settings_of(account, OAuth2Settings)
        account = replace(
            account,
            client_id=google.tv.client_id,
            settings=replace(settings, device_authorization_url=google.device_authorization_url),
        )
        client = OAuth2Client(make_http_client(HttpSettings()), account, google.tv.client_secret)
        with pytest.raises(ProviderRefused, match="login --browser") as caught:
            client.request_device_code(now=0)

        assert GMAIL_SCOPE in str(caught.value)

    def test_browser_login_with_the_preset_yields_a_refresh_token(
        self, google: GoogleEmulator
    ) -> None:
        client = provider(gmail_config(google))
        tokens = browser_login(client, port=0, out=io.StringIO(), open_browser=in_background)

        assert tokens.refresh_token
        assert google.is_active(tokens.access_token)
        (url,) = [r.query for r in google.requests_to("/o/oauth2/v2/auth")]
        assert (url["access_type"], url["prompt"], url["scope"]) == (
            "offline",
            "consent",
            GMAIL_SCOPE,
        )

    def test_without_access_type_offline_google_issues_no_refresh_token(
        self, google: GoogleEmulator
    ) -> None:
        """The 200 is still the only copy of the grant: the message says what to change."""
        account = with_params(parse_config(gmail_config(google)).select(None), ())
        client = OAuth2Client(make_http_client(HttpSettings()), account, account.client_secret)
        with pytest.raises(LoginFailed) as caught:
            browser_login(client, port=0, out=io.StringIO(), open_browser=in_background)

        assert "refresh_token is missing" in str(caught.value)
        assert 'access_type = "offline"' in str(caught.value)
        assert "offline_access" not in str(caught.value)

    def test_a_second_login_needs_prompt_consent(self, google: GoogleEmulator) -> None:
        """Consented before: no refresh token without prompt=consent, one with it."""
        offline_only = (("access_type", "offline"),)
        account = parse_config(gmail_config(google)).select(None)
        without = with_params(account, offline_only)
        http = make_http_client(HttpSettings())
        first = browser_login(
            OAuth2Client(http, without, account.client_secret),
            port=0,
            out=io.StringIO(),
            open_browser=in_background,
        )
        assert first.refresh_token
        with pytest.raises(LoginFailed, match="refresh_token is missing"):
            browser_login(
                OAuth2Client(http, without, account.client_secret),
                port=0,
                out=io.StringIO(),
                open_browser=in_background,
            )
        again = browser_login(
            OAuth2Client(http, account, account.client_secret),
            port=0,
            out=io.StringIO(),
            open_browser=in_background,
        )
        assert again.refresh_token


class TestMicrosoftProvider:
    def test_device_flow_with_aadsts_bodies_and_rotation(
        self, microsoft: MicrosoftEmulator
    ) -> None:
        client = provider(outlook_config(microsoft))
        device = client.request_device_code(now=0)

        assert client.poll_device_token(device, now=0) is PollState.PENDING
        microsoft.approve_device(device.user_code)
        tokens = client.poll_device_token(device, now=0)
        assert isinstance(tokens, TokenSet)
        rotated = client.refresh(tokens.refresh_token, now=0)
        assert rotated.refresh_token != tokens.refresh_token
        microsoft.revoke_all()
        with pytest.raises(SessionRejected, match="invalid_grant"):
            client.refresh(rotated.refresh_token, now=0)

    def test_authorization_declined_is_a_denied_login(self, microsoft: MicrosoftEmulator) -> None:
        client = provider(outlook_config(microsoft))
        device = client.request_device_code(now=0)
        microsoft.decline_device(device.user_code)

        with pytest.raises(LoginFailed, match="the login was denied"):
            client.poll_device_token(device, now=0)


def approve_when_shown(process: Any, approve: Any) -> list[str]:
    """Read `login`'s output until the user code, approve it as the user; return the lines."""
    seen = []
    for line in process.stdout:
        seen.append(line)
        found = re.search(r"enter the code: (\S+)", line)
        if found:
            approve(found.group(1))
            break
    return seen


def login_by_device(harness: Harness, approve: Any) -> Run:
    process = harness.spawn("login")
    seen = approve_when_shown(process, approve)
    run = harness.finish(process, ("login",))
    run.out = "".join(seen) + run.out
    return run


class TestCommand:
    def test_google_device_login_refresh_and_logout(
        self, harness: Harness, google: GoogleEmulator
    ) -> None:
        """Before: exit 75 after 0.3 s, "verification_uri is missing"."""
        harness.write_config(gmail_config(google, device=True))
        run = login_by_device(harness, google.approve_device)
        harness.extra_secrets |= google.secrets()

        assert run.code == 0, run.err
        assert "https://www.google.com/device" in run.out
        first = harness.stored()
        assert first is not None
        assert harness.run("refresh", "--force").code == 0
        second = harness.stored()
        assert second is not None
        assert second["refresh_token"] == first["refresh_token"]
        assert harness.run("logout").code == 0
        assert all(grant.revoked for grant in google.grants)

    @pytest.mark.parametrize("endpoints", [("token",), ("devicecode", "token")])
    def test_v1_string_lifetimes_keep_the_redeemed_grant(
        self, harness: Harness, endpoints: tuple[str, ...]
    ) -> None:
        """Before: strings in the device answer were 75 at once; in the token answer, the 200
        was called malformed, the tokens thrown away, the spent code polled again, and `login`
        exited 1 with "the provider no longer accepts this code"."""
        with MicrosoftEmulator(numbers_as_strings=endpoints) as microsoft:
            harness.write_config(outlook_config(microsoft))
            run = login_by_device(harness, microsoft.approve_device)
            harness.extra_secrets |= microsoft.secrets()

            assert run.code == 0, run.err
            stored = harness.stored()
            assert stored is not None
            assert stored["expires_in"] == 3599
            polls = [status for r, status in microsoft.statuses if "device_code" in r.form]
            assert polls[-1] == 200  # the poll that redeemed the code was the last one
            assert polls.count(200) == 1
            refresh = harness.run("refresh", "--force")
            harness.extra_secrets |= microsoft.secrets()
            assert refresh.code == 0, refresh.err  # before: 75, "expires_in=0 is outside"
            assert microsoft.errors == []

    def test_outlook_declined_login_says_denied(
        self, harness: Harness, microsoft: MicrosoftEmulator
    ) -> None:
        harness.write_config(outlook_config(microsoft))
        run = login_by_device(harness, microsoft.decline_device)
        harness.extra_secrets |= microsoft.secrets()

        assert run.code == 1
        assert "the login was denied" in run.err
        assert harness.stored() is None

    def test_outlook_revoked_grant_is_77_and_logout_works_without_revocation(
        self, harness: Harness, microsoft: MicrosoftEmulator
    ) -> None:
        harness.write_config(outlook_config(microsoft))
        assert login_by_device(harness, microsoft.approve_device).code == 0
        harness.extra_secrets |= microsoft.secrets()
        microsoft.revoke_all()

        assert harness.run("refresh", "--force").code == 77
        assert harness.run("logout").code == 0
        assert harness.stored() is None
