"""Authorization-code login with PKCE and a one-shot loopback redirect (RFC 8252), for
providers without a device flow, as pizauth and git-credential-oauth do.

A listener on 127.0.0.1 (a random port, or a fixed one to forward over ``ssh -L``) waits for
the single redirect that carries our random ``state``; anything else gets a 404 and is ignored.
"""

from __future__ import annotations

import http.server
import secrets
import sys
import time
import webbrowser
from collections.abc import Callable, Mapping
from typing import TextIO
from urllib.parse import parse_qs, urlsplit

from tvmaniac_refreshd.core.errors import LoginFailed
from tvmaniac_refreshd.core.logs import strip_controls
from tvmaniac_refreshd.core.tokens import TokenSet
from tvmaniac_refreshd.providers.base import BrowserLogin
from tvmaniac_refreshd.providers.oauth2 import pkce_pair

# An error and its description worth showing fit in this; the rest is cut.
MAX_ERROR_TEXT = 300

# Long enough to sign in with a password manager and a second factor.
LOGIN_TIMEOUT = 300.0
DONE_PAGE = b"""<!doctype html><meta charset="utf-8"><title>tvmaniac-refreshd</title>
<p>Logged in. You can close this window and return to the terminal.</p>"""


class _Callback(http.server.BaseHTTPRequestHandler):
    """Answers the redirect; the server object collects what it carried."""

    server: _OneShot

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = {key: values[0] for key, values in parse_qs(parts.query).items()}
        if parts.path != self.server.callback_path or query.get("state") != self.server.state:
            self.send_error(404)
            return
        self.server.result = query
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(DONE_PAGE)))
        self.end_headers()
        self.wfile.write(DONE_PAGE)

    def log_message(self, format: str, *args: object) -> None:
        """Stay quiet: the query string holds the authorization code."""


class _OneShot(http.server.HTTPServer):
    def __init__(self, port: int, state: str, path: str) -> None:
        super().__init__(("127.0.0.1", port), _Callback)
        self.state = state
        self.callback_path = path
        self.result: dict[str, str] | None = None


def has_display(environ: Mapping[str, str]) -> bool:
    """Return whether a browser can be opened here (a desktop session, or macOS)."""
    return sys.platform == "darwin" or bool(
        environ.get("DISPLAY") or environ.get("WAYLAND_DISPLAY")
    )


def browser_login(
    client: BrowserLogin,
    *,
    port: int,
    out: TextIO,
    open_browser: Callable[[str], object] | None = None,
    clock: Callable[[], float] = time.monotonic,
    timeout: float = LOGIN_TIMEOUT,
    now: Callable[[], float] = time.time,
    redirect_uri: str | None = None,
) -> TokenSet:
    """Run the browser login and return the tokens.

    ``redirect_uri``: the exact URI to send (a provider that accepts only a registered one,
    such as Trakt); its path is the one listened for, on ``port``. Default:
    ``http://127.0.0.1:PORT/callback`` on the port actually bound.

    Raises:
        LoginFailed: the provider returned an error, or nobody completed the login in time.
    """
    state = secrets.token_urlsafe(24)
    verifier, challenge = pkce_pair()
    try:
        server = _OneShot(port, state, urlsplit(redirect_uri).path if redirect_uri else "/callback")
    except OSError as exc:
        raise LoginFailed(f"cannot listen on 127.0.0.1:{port} for the redirect: {exc}") from None
    with server:
        redirect_uri = redirect_uri or f"http://127.0.0.1:{server.server_address[1]}/callback"
        url = client.authorization_request(redirect_uri, state, challenge)
        out.write(f"To log in, open this URL in a browser:\n\n  {url}\n\n")
        out.write(
            f"Waiting for the redirect to {redirect_uri} (from another machine, forward the "
            f"port first: ssh -L {server.server_address[1]}:127.0.0.1:"
            f"{server.server_address[1]} ...)\n"
        )
        out.flush()
        if open_browser is not None:
            open_browser(url)
        deadline = clock() + timeout
        while server.result is None:
            left = deadline - clock()
            if left <= 0:
                raise LoginFailed("nobody completed the browser login in time; run `login` again")
            server.timeout = min(left, 1.0)
            server.handle_request()
        result = server.result
    if "error" in result:
        # The redirect's text is the server's (or anyone's who can reach the loopback port).
        detail = strip_controls(f"{result['error']} {result.get('error_description', '')}")
        raise LoginFailed(f"the provider refused the login: {detail[:MAX_ERROR_TEXT]}".strip())
    if "code" not in result:
        raise LoginFailed("the redirect carried no authorization code")
    return client.exchange_code(
        result["code"], verifier=verifier, redirect_uri=redirect_uri, now=now()
    )


def default_opener() -> Callable[[str], object]:
    """Return a function that opens a URL in the user's browser."""
    return webbrowser.open
