"""The mail recipe for real: msmtp's ``passwordeval`` runs ``tvmaniac-refreshd token`` and
authenticates with ``AUTH XOAUTH2`` at a real SMTP server (aiosmtpd) that accepts only an access
token the real OAuth2 server (oidc-provider) vouches for by introspection."""

from __future__ import annotations

import base64
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session

from tests.integration.test_oauth2_interop import login_by_device, oauth2_config
from tests.support.harness import REPO, Harness
from tests.support.oidc_server import OidcServer

USER = "alice@example.com"


class XOAuth2Mailbox:
    """An SMTP handler that offers AUTH XOAUTH2 only, checks the bearer token by introspection,
    and keeps each accepted message with the token it was sent under."""

    def __init__(self, token_is_active: Any) -> None:
        self.token_is_active = token_is_active
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
        if values.get("user") == USER and scheme == "Bearer" and self.token_is_active(token):
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


@pytest.fixture
def mailbox(oidc: OidcServer) -> Iterator[tuple[XOAuth2Mailbox, int]]:
    handler = XOAuth2Mailbox(lambda token: bool(oidc.introspect(token).get("active")))
    # Controller's start-up check connects to the very port it was given, so not 0: a free one.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=port,
        auth_required=False,  # enforced in handle_DATA: aiosmtpd warns on AUTH without TLS
        auth_require_tls=False,  # loopback only; msmtp is told `tls off` below
    )
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


def test_msmtp_sends_with_passwordeval_and_xoauth2(
    harness: Harness,
    oidc: OidcServer,
    mailbox: tuple[XOAuth2Mailbox, int],
    tmp_path: Path,
) -> None:
    if shutil.which("msmtp") is None:
        pytest.fail("msmtp is missing: run `make system-deps`")
    handler, port = mailbox
    harness.extra_secrets |= {c.client_secret for c in oidc.clients if c.client_secret}
    harness.write_config(oauth2_config(oidc, oidc.basic_client))
    assert login_by_device(harness, oidc).code == 0
    config = tmp_path / "msmtprc"
    # The README's recipe, pointed at the local server.
    config.write_text(
        "defaults\n"
        "logfile -\n"
        "account default\n"
        f"host 127.0.0.1\nport {port}\ntls off\n"
        f"from {USER}\nuser {USER}\n"
        "auth xoauth2\n"
        f'passwordeval "{sys.executable} -m tvmaniac_refreshd token"\n'
    )
    config.chmod(0o600)

    result = subprocess.run(
        ["msmtp", "-C", str(config), "bob@example.com"],
        input=f"From: {USER}\nTo: bob@example.com\nSubject: hi\n\nsent with a fresh token\n",
        env=harness.env(PYTHONPATH=str(REPO)),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stderr + result.stdout
    stored = harness.stored()
    assert stored is not None
    harness.extra_secrets |= {str(stored["access_token"]), str(stored["refresh_token"])}
    assert len(handler.messages) == 1
    token, content = handler.messages[0]
    assert token == stored["access_token"]
    assert b"sent with a fresh token" in content
    assert str(stored["access_token"]) not in result.stdout + result.stderr
