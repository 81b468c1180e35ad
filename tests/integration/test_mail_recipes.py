"""The mail recipe for real: msmtp's ``passwordeval`` runs ``tvmaniac-refreshd token`` and
authenticates with ``AUTH XOAUTH2`` at a real SMTP server (aiosmtpd) that accepts only an access
token the real OAuth2 server (oidc-provider) vouches for by introspection."""

from __future__ import annotations

import base64
import contextlib
import json
import re
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session

from tests.integration.test_oauth2_interop import login_by_device, oauth2_config
from tests.support.google_emulator import USER as GMAIL_USER
from tests.support.google_emulator import GoogleEmulator
from tests.support.harness import REPO, Harness
from tests.support.microsoft_emulator import USER as OUTLOOK_USER
from tests.support.microsoft_emulator import MicrosoftEmulator
from tests.support.oidc_server import OidcServer

USER = "alice@example.com"


class XOAuth2Mailbox:
    """An SMTP handler that offers AUTH XOAUTH2 only, checks the bearer token by introspection,
    and keeps each accepted message with the token it was sent under."""

    def __init__(self, token_is_active: Any, user: str = USER) -> None:
        self.token_is_active = token_is_active
        self.user = user
        self.messages: list[tuple[str, bytes]] = []
        self.refused = 0
        self._lock = threading.Lock()

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:
        """RFC-less but documented by Google: base64("user=U^Aauth=Bearer T^A^A")."""
        if len(args) > 1:  # the initial response, on the AUTH line
            try:
                response = base64.b64decode(args[1], validate=True)
            except ValueError:
                response = b""
        else:  # msmtp waits for an empty challenge first (RFC 4954 allows both)
            answer = await server.challenge_auth("")
            response = answer if isinstance(answer, bytes) else b""
        fields = response.decode(errors="replace").split("\x01")
        values = dict(field.split("=", 1) for field in fields if "=" in field)
        scheme, _, token = values.get("auth", "").partition(" ")
        if values.get("user") == self.user and scheme == "Bearer" and self.token_is_active(token):
            return AuthResult(success=True, auth_data=token)
        with self._lock:
            self.refused += 1
        return AuthResult(success=False, handled=False)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if not session.authenticated:
            return "530 5.7.0 Authentication required"
        content = envelope.content if isinstance(envelope.content, bytes) else b""
        with self._lock:
            self.messages.append((str(session.auth_data), content))
        return "250 OK"


@pytest.fixture
def oidc() -> Iterator[OidcServer]:
    with OidcServer(access_token_ttl=300) as server:
        yield server


class AuthLineSMTP(SMTP):
    """aiosmtpd with the AUTH line a real server accepts: RFC 4954 §4 allows 12288 octets,
    and a Microsoft access token (a JWT) in XOAUTH2 is over 2000 of them."""

    line_length_limit = 12288


class AuthLineController(Controller):
    def factory(self) -> SMTP:
        return AuthLineSMTP(self.handler, **self.SMTP_kwargs)


@pytest.fixture
def mailbox(oidc: OidcServer) -> Iterator[tuple[XOAuth2Mailbox, int]]:
    handler = XOAuth2Mailbox(lambda token: bool(oidc.introspect(token).get("active")))
    with serving(handler) as port:
        yield handler, port


@contextlib.contextmanager
def serving(handler: XOAuth2Mailbox) -> Iterator[int]:
    """Run an SMTP server with ``handler`` on a free loopback port."""
    # Controller's start-up check connects to the very port it was given, so not 0: a free one.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    controller = AuthLineController(
        handler,
        hostname="127.0.0.1",
        port=port,
        auth_required=False,  # enforced in handle_DATA: aiosmtpd warns on AUTH without TLS
        auth_require_tls=False,  # loopback only; msmtp is told `tls off` below
    )
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


def test_msmtp_sends_with_passwordeval_and_xoauth2(
    harness: Harness,
    oidc: OidcServer,
    mailbox: tuple[XOAuth2Mailbox, int],
    tmp_path: Path,
) -> None:
    handler, port = mailbox
    harness.extra_secrets |= {c.client_secret for c in oidc.clients if c.client_secret}
    harness.write_config(oauth2_config(oidc, oidc.basic_client))
    assert login_by_device(harness, oidc).code == 0
    result = send_with_msmtp(harness, port, USER, tmp_path)

    assert result.returncode == 0, result.stderr + result.stdout
    stored = harness.stored()
    assert stored is not None
    harness.extra_secrets |= {str(stored["access_token"]), str(stored["refresh_token"])}
    assert len(handler.messages) == 1
    token, content = handler.messages[0]
    assert token == stored["access_token"]
    assert b"sent with a fresh token" in content
    assert str(stored["access_token"]) not in result.stdout + result.stderr


def send_with_msmtp(
    harness: Harness, port: int, user: str, tmp_path: Path, account: str | None = None
) -> subprocess.CompletedProcess[str]:
    """The README's msmtp recipe, pointed at the local server: one message from ``user``."""
    if shutil.which("msmtp") is None:
        pytest.fail("msmtp is missing: run `make system-deps`")
    which = f"--account {account} " if account else ""
    config = tmp_path / "msmtprc"
    config.write_text(
        "defaults\n"
        "logfile -\n"
        "account default\n"
        f"host 127.0.0.1\nport {port}\ntls off\n"
        f"from {user}\nuser {user}\n"
        "auth xoauth2\n"
        f'passwordeval "{sys.executable} -m tvmaniac_refreshd {which}token"\n'
    )
    config.chmod(0o600)
    return subprocess.run(
        ["msmtp", "-C", str(config), "bob@example.com"],
        input=f"From: {user}\nTo: bob@example.com\nSubject: hi\n\nsent with a fresh token\n",
        env=harness.env(PYTHONPATH=str(REPO)),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def from_config_init(harness: Harness, account: str, *init: str, endpoints: str) -> None:
    """`config init` as the README's recipe says, then its endpoints moved to the emulation."""
    harness.config_path.unlink()
    run = harness.run("--account", account, "config", "init", *init)
    assert run.code == 0, run.err
    written = harness.config_path.read_text()
    harness.write_config(written + endpoints + "[alerts]\ndesktop = false\n")


def assert_sent_with_the_stored_token(
    harness: Harness,
    handler: XOAuth2Mailbox,
    result: subprocess.CompletedProcess[str],
    account: str,
) -> None:
    assert result.returncode == 0, result.stderr + result.stdout
    text = harness.item_text(account)
    assert text is not None
    stored = json.loads(text)
    harness.extra_secrets |= {str(stored["access_token"]), str(stored["refresh_token"])}
    assert len(handler.messages) == 1
    token, content = handler.messages[0]
    assert token == stored["access_token"]
    assert b"sent with a fresh token" in content
    assert str(stored["access_token"]) not in result.stdout + result.stderr


def test_gmail_from_config_init_through_the_browser_login(harness: Harness, tmp_path: Path) -> None:
    """README "Mail: Gmail": config init --preset google, set-secret, login (the browser flow,
    with access_type=offline and prompt=consent), then msmtp's passwordeval."""
    with GoogleEmulator() as google:
        client = google.desktop
        harness.extra_secrets.add(client.client_secret)
        from_config_init(
            harness,
            "gmail",
            "--preset",
            "google",
            "--client-id",
            client.client_id,
            endpoints=(
                f'token_url = "{google.token_url}"\n'
                f'authorization_url = "{google.authorization_url}"\n'
                f'revocation_url = "{google.revocation_url}"\n'
            ),
        )
        secret = harness.run(
            "--account", "gmail", "config", "set-secret", stdin=client.client_secret
        )
        assert secret.code == 0, secret.err
        process = harness.spawn("--account", "gmail", "login")
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
            consent = browser.get(url)
            assert consent.status_code == 302, consent.text
            browser.get(consent.headers["location"])
        login = harness.finish(process, ("--account", "gmail", "login"))
        harness.extra_secrets |= google.secrets()
        assert login.code == 0, login.err
        assert re.search(
            r"access_type=offline.*prompt=consent|prompt=consent.*access_type=offline", url
        )

        handler = XOAuth2Mailbox(google.is_active, user=GMAIL_USER)
        with serving(handler) as port:
            result = send_with_msmtp(harness, port, GMAIL_USER, tmp_path, account="gmail")
        harness.extra_secrets |= google.secrets()
        assert_sent_with_the_stored_token(harness, handler, result, "gmail")
        assert google.errors == []


def test_outlook_from_config_init_through_the_device_login(
    harness: Harness, tmp_path: Path
) -> None:
    """README "Mail: Outlook": config init --preset microsoft, login (the device flow, a
    public client: no secret), then msmtp's passwordeval."""
    with MicrosoftEmulator(tenant="consumers") as microsoft:
        from_config_init(
            harness,
            "outlook",
            "--preset",
            "microsoft",
            "--tenant",
            "consumers",
            "--client-id",
            microsoft.client_id,
            endpoints=(
                f'token_url = "{microsoft.token_url}"\n'
                f'device_authorization_url = "{microsoft.device_authorization_url}"\n'
            ),
        )
        process = harness.spawn("--account", "outlook", "login")
        assert process.stdout is not None
        for line in process.stdout:
            found = re.search(r"enter the code: (\S+)", line)
            if found:
                microsoft.approve_device(found.group(1))
                break
        login = harness.finish(process, ("--account", "outlook", "login"))
        harness.extra_secrets |= microsoft.secrets()
        assert login.code == 0, login.err

        handler = XOAuth2Mailbox(microsoft.is_active, user=OUTLOOK_USER)
        with serving(handler) as port:
            result = send_with_msmtp(harness, port, OUTLOOK_USER, tmp_path, account="outlook")
        harness.extra_secrets |= microsoft.secrets()
        assert_sent_with_the_stored_token(harness, handler, result, "outlook")
        assert microsoft.errors == []
