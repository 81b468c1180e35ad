"""Authorization-code login with PKCE and a one-shot loopback redirect (RFC 8252), for
providers without a device flow, as pizauth and git-credential-oauth do.

The listener (``loopback.py``) takes exactly the addresses the redirect URI names, on a fixed
port (to forward over ``ssh -L``) or a free one, and answers only this user's connections.
Neither ``state`` nor the PKCE challenge ever stands in an argv, where every local user can
read it (``/proc/PID/cmdline`` of the browser): the browser is given
``http://HOST:PORT/start/NONCE``, which the listener answers, once, with a redirect to the
authorization URL. Then it waits for the one redirect back that carries our ``state``.
"""

from __future__ import annotations

import hmac
import os
import secrets
import sys
import threading
import time
import webbrowser
from collections.abc import Callable, Mapping
from typing import TextIO
from urllib.parse import parse_qs, urlsplit

from tvmaniac_refreshd.core.errors import LoginFailed
from tvmaniac_refreshd.core.logs import strip_controls
from tvmaniac_refreshd.core.tokens import TokenSet
from tvmaniac_refreshd.providers.base import BrowserLogin
from tvmaniac_refreshd.providers.loopback import LoopbackServer, Page, url_host
from tvmaniac_refreshd.providers.oauth2 import pkce_pair

# An error and its description worth showing fit in this; the rest is cut.
MAX_ERROR_TEXT = 300

# Long enough to sign in with a password manager and a second factor.
LOGIN_TIMEOUT = 300.0
DONE_PAGE = b"""<!doctype html><meta charset="utf-8"><title>tvmaniac-refreshd</title>
<p>Logged in. You can close this window and return to the terminal.</p>"""


class _Flow:
    """What the listener answers: the start link once, then the callback with our state once."""

    def __init__(self, nonce: str, authorization_url: str, callback_path: str, state: str) -> None:
        self._start_path = f"/start/{nonce}"
        self._authorization_url = authorization_url
        self._callback_path = callback_path
        self._state = state
        self._lock = threading.Lock()
        self._started = False
        self.result: dict[str, str] | None = None
        self.done = threading.Event()

    def answer(self, target: str) -> Page:
        parts = urlsplit(target)
        with self._lock:
            if parts.path == self._start_path and not self._started:
                self._started = True
                return Page(302, location=self._authorization_url)
            if parts.path == self._callback_path and self.result is None:
                query = {key: values[0] for key, values in parse_qs(parts.query).items()}
                if hmac.compare_digest(query.get("state", ""), self._state):
                    self.result = query
                    self.done.set()
                    return Page(200, DONE_PAGE)
        return Page(404)


def owner_uid() -> int | None:
    """The uid whose connections the listener answers: ours on Linux; None (no check) where
    the kernel lists no socket owners (macOS)."""
    return os.getuid() if sys.platform.startswith("linux") else None


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
    nonce = secrets.token_urlsafe(24)
    verifier, challenge = pkce_pair()
    parts = urlsplit(redirect_uri) if redirect_uri else None
    host = parts.hostname if parts is not None and parts.hostname else "127.0.0.1"
    flow: _Flow | None = None

    def answer(target: str) -> Page:
        return flow.answer(target) if flow is not None else Page(404)

    with LoopbackServer(host, port, answer, owner_uid=owner_uid()) as server:
        redirect_uri = redirect_uri or f"http://127.0.0.1:{server.port}/callback"
        url = client.authorization_request(redirect_uri, state, challenge)
        flow = _Flow(nonce, url, (parts.path or "/") if parts else "/callback", state)
        start = f"http://{url_host(host)}:{server.port}/start/{nonce}"
        out.write(f"To log in, open this URL in a browser:\n\n  {start}\n\n")
        out.write(
            f"Waiting for the redirect to {redirect_uri} (from another machine, forward the "
            f"port first: ssh -L {server.port}:{url_host(host)}:{server.port} ...)\n"
        )
        out.flush()
        if open_browser is not None:
            open_browser(start)
        deadline = clock() + timeout
        finished = server.serve_until(flow.done, deadline=deadline, clock=clock)
        _report_refused(server, out)
        result = flow.result
        if not finished or result is None:
            raise LoginFailed("nobody completed the browser login in time; run `login` again")
    if "error" in result:
        # The redirect's text is the server's (or anyone's who can reach the loopback port).
        detail = strip_controls(f"{result['error']} {result.get('error_description', '')}")
        raise LoginFailed(f"the provider refused the login: {detail[:MAX_ERROR_TEXT]}".strip())
    if "code" not in result:
        raise LoginFailed("the redirect carried no authorization code")
    return client.exchange_code(
        result["code"], verifier=verifier, redirect_uri=redirect_uri, now=now()
    )


def _report_refused(server: LoopbackServer, out: TextIO) -> None:
    for uid in server.take_refused():
        who = "an unknown process" if uid is None else f"a process of uid {uid}"
        out.write(
            f"Refused a connection to the login listener from {who}: only this user's "
            "browser may complete the login\n"
        )


def default_opener() -> Callable[[str], object]:
    """Return a function that opens a URL in the user's browser."""
    return webbrowser.open
