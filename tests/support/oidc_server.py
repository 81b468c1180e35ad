"""A real third-party OAuth2/OIDC server for tests: panva's ``oidc-provider`` under Node.js.

``OidcServer`` runs ``tests/oidc/server.mjs`` (oidc-provider 9.13.3, pinned by
``tests/oidc/package-lock.json``) on a free loopback port, with the device flow, rotating
refresh tokens with reuse detection, revocation, introspection and the PKCE authorization-code
flow. It also plays the user: ``approve_device`` and ``deny_device`` answer a user code the way
a browser would, and ``authorize`` logs in and consents for an authorization URL and returns
the redirect to the client's loopback URI. Everything happens over plain HTTP.

Clients (each has a fresh random secret per server, so a leak check can look for it):

* ``basic_client``: confidential, ``client_secret_basic``;
* ``post_client``: confidential, ``client_secret_post``;
* ``public_client``: public, ``token_endpoint_auth_method = none``.

All are ``application_type = native`` clients registered with ``http://127.0.0.1/callback``;
oidc-provider then accepts that URI on any port (RFC 8252, section 7.3). Every client may use
the device_code, refresh_token and authorization_code grants, and PKCE (S256) is required for
every authorization request. Refresh tokens are issued only for ``scope`` including
``offline_access``; in the authorization-code flow oidc-provider also drops ``offline_access``
unless the request carries ``prompt=consent`` (OpenID Connect Core, section 11).

Behaviours to expect (recipe: /work/shared/recipes/real-components.md, section 4.5): using a
consumed refresh token returns ``invalid_grant`` *and revokes the whole grant*; revoking either
token of a grant revokes all of them; ``error_description`` is always generic, the reason is in
``grant_errors`` (``wait_for_grant_error``); the device authorization response has no
``interval``; state is in memory.

If Node.js or the npm packages are missing, starting fails with ``OidcServerUnavailable``
(run ``make test``, which runs ``npm ci`` in ``tests/oidc``): these tests never skip.
"""

from __future__ import annotations

import html
import json
import queue
import re
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal, Self

import httpx

OIDC_DIR = Path(__file__).resolve().parents[1] / "oidc"
SERVER_SCRIPT = OIDC_DIR / "server.mjs"
# What `npm ci` leaves behind; the package itself, not the stamp, so a hand-run `npm ci` counts.
PROVIDER_PACKAGE = OIDC_DIR / "node_modules" / "oidc-provider" / "package.json"
REDIRECT_URI = "http://127.0.0.1/callback"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
GRANT_TYPES = [DEVICE_GRANT, "refresh_token", "authorization_code"]
_LISTENING = re.compile(r"^oidc-provider listening on (http://127\.0\.0\.1:\d+)$")
_XSRF = re.compile(r'name="xsrf" value="([^"]+)"')
# Startup takes about 0.5 s; the bound only stops a broken install from hanging the suite.
START_TIMEOUT = 20.0
STOP_TIMEOUT = 5.0
HTTP_TIMEOUT = 10.0
# A login is three hops (interaction, resume, client); the device confirmation two.
MAX_REDIRECTS = 10

# A server mounted as Django and Rails servers are (every endpoint path ends with '/'), for
# OidcServer(routes=...); the code-verification page stays at /device, where approve_device goes.
MOUNTED_ROUTES = {
    "token": "/o/token/",
    "device_authorization": "/o/device/",
    "revocation": "/o/revoke/",
    "introspection": "/o/introspect/",
    "authorization": "/o/authorize/",
}
# A query the token endpoint then requires, as Azure AD B2C's select the policy, for queries=.
TOKEN_QUERY = {"token": "p=B2C_1_refreshd"}

AuthMethod = Literal["client_secret_basic", "client_secret_post", "none"]


class OidcServerUnavailable(RuntimeError):
    """Node.js or the oidc-provider npm package is missing, or the server did not start."""


@dataclass(frozen=True)
class OidcClient:
    """One registered client and the way it authenticates at the token endpoint."""

    client_id: str
    client_secret: str | None
    auth_method: AuthMethod

    @property
    def auth(self) -> httpx.BasicAuth | None:
        """The HTTP Basic credentials for ``client_secret_basic``, else None."""
        if self.auth_method != "client_secret_basic" or self.client_secret is None:
            return None
        return httpx.BasicAuth(self.client_id, self.client_secret)

    def form(self) -> dict[str, str]:
        """The client's own form fields for a token, revocation or introspection request."""
        if self.auth_method == "client_secret_basic":
            return {}
        if self.auth_method == "client_secret_post" and self.client_secret is not None:
            return {"client_id": self.client_id, "client_secret": self.client_secret}
        return {"client_id": self.client_id}

    def registration(self) -> dict[str, Any]:
        """The client's metadata as oidc-provider's ``clients`` configuration takes it."""
        metadata: dict[str, Any] = {
            "client_id": self.client_id,
            "application_type": "native",
            "token_endpoint_auth_method": self.auth_method,
            "grant_types": GRANT_TYPES,
            "response_types": ["code"],
            "redirect_uris": [REDIRECT_URI],
        }
        if self.client_secret is not None:
            metadata["client_secret"] = self.client_secret
        return metadata


class OidcServer:
    """``node tests/oidc/server.mjs`` on a free loopback port, for the life of a ``with`` block."""

    def __init__(
        self,
        *,
        access_token_ttl: int = 60,
        refresh_token_ttl: int = 24 * 3600,
        device_code_ttl: int = 600,
        clock_tolerance: int = 0,
        account: str = "alice",
        routes: dict[str, str] | None = None,
        queries: dict[str, str] | None = None,
        record_file: Path | None = None,
    ) -> None:
        """``routes`` mounts endpoints elsewhere (oidc-provider's option of that name, e.g.
        ``{"token": "/o/token/"}``); ``queries`` makes an endpoint require a query, by route
        name (``{"token": "p=B2C_1_x"}``), answering 404 without it; ``record_file`` gets one
        JSON line per POST, read back with ``recorded_requests``."""
        self.basic_client = OidcClient(
            "refreshd-basic", secrets.token_urlsafe(24), "client_secret_basic"
        )
        self.post_client = OidcClient(
            "refreshd-post", secrets.token_urlsafe(24), "client_secret_post"
        )
        self.public_client = OidcClient("refreshd-public", None, "none")
        self.account = account
        self._config = {
            "port": 0,
            "atTtl": access_token_ttl,
            "rtTtl": refresh_token_ttl,
            "deviceCodeTtl": device_code_ttl,
            "clockTolerance": clock_tolerance,
            "account": account,
            # The node process exits when our end of its stdin closes, even if we are killed.
            "exitOnStdinEof": "1",
            "clients": [c.registration() for c in self.clients],
            "routes": routes or {},
            "queries": queries or {},
        }
        self._queries = queries or {}
        self.record_file = record_file
        if record_file is not None:
            self._config["recordFile"] = str(record_file)
        self.stdout_lines: list[str] = []
        self.stderr_lines: list[str] = []
        # Notified on every output line, for wait_for_grant_error.
        self._output = threading.Condition()
        self.metadata: dict[str, Any] = {}
        self._issuer: str | None = None
        self._process: subprocess.Popen[str] | None = None
        self._readers: list[threading.Thread] = []
        self._finalizer: weakref.finalize[Any, Any] | None = None

    @property
    def clients(self) -> tuple[OidcClient, OidcClient, OidcClient]:
        """The three registered clients: basic, post and public."""
        return (self.basic_client, self.post_client, self.public_client)

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start the server and wait until it listens and serves its discovery document."""
        node = shutil.which("node")
        if node is None:
            raise OidcServerUnavailable(
                "Node.js (`node`) is not on PATH; it is needed for tests/oidc/server.mjs"
            )
        if not PROVIDER_PACKAGE.is_file():
            raise OidcServerUnavailable(
                "tests/oidc/node_modules is not installed: run `make test` "
                "(or `cd tests/oidc && npm ci`)"
            )
        with tempfile.TemporaryDirectory(prefix="oidc-config-") as tmp:
            # A file, not argv or the environment: the client secrets stay out of `ps`.
            config = Path(tmp) / "config.json"
            config.touch(mode=0o600)
            config.write_text(json.dumps(self._config))
            self._process = subprocess.Popen(
                [node, str(SERVER_SCRIPT), "--config", str(config)],
                cwd=OIDC_DIR,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                encoding="utf-8",
            )
            self._finalizer = weakref.finalize(self, _terminate, self._process)
            lines: queue.Queue[str | None] = queue.Queue()
            assert self._process.stdout is not None
            assert self._process.stderr is not None
            self._readers = [
                _reader(self._process.stdout, self.stdout_lines, self._output, lines),
                _reader(self._process.stderr, self.stderr_lines, self._output, None),
            ]
            try:
                self._issuer = self._wait_for_listening(lines)
            except BaseException:
                self.stop()
                raise
        self.metadata = self._discover()

    def _wait_for_listening(self, lines: queue.Queue[str | None]) -> str:
        deadline = time.monotonic() + START_TIMEOUT
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                line = lines.get(timeout=remaining)
            except queue.Empty:
                break
            if line is None:
                break
            if match := _LISTENING.match(line):
                return match.group(1)
        assert self._process is not None
        stderr = "\n".join(self.stderr_lines[-20:])
        raise OidcServerUnavailable(
            f"tests/oidc/server.mjs did not report listening within {START_TIMEOUT:.0f} s "
            f"(exit code {self._process.poll()}); stderr:\n{stderr}"
        )

    def _discover(self) -> dict[str, Any]:
        response = httpx.get(self.discovery_url, timeout=HTTP_TIMEOUT)
        response.raise_for_status()
        metadata: dict[str, Any] = response.json()
        if metadata.get("issuer") != self.issuer:
            raise OidcServerUnavailable(f"discovery names issuer {metadata.get('issuer')!r}")
        return metadata

    def stop(self) -> None:
        """Terminate the server and wait for it and its output readers; idempotent."""
        if self._finalizer is not None:
            self._finalizer()
        for reader in self._readers:
            reader.join(STOP_TIMEOUT)

    @property
    def running(self) -> bool:
        """Whether the node process is alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int:
        """The node process's PID."""
        assert self._process is not None, "the server was never started"
        return self._process.pid

    # -- endpoints ---------------------------------------------------------------------------

    @property
    def issuer(self) -> str:
        """The issuer, ``http://127.0.0.1:PORT``, also the base of every endpoint."""
        assert self._issuer is not None, "the server is not started"
        return self._issuer

    @property
    def port(self) -> int:
        """The loopback port the server listens on."""
        return int(self.issuer.rsplit(":", 1)[1])

    @property
    def discovery_url(self) -> str:
        """The OpenID Connect discovery document."""
        return f"{self.issuer}/.well-known/openid-configuration"

    def endpoint(self, route: str, key: str) -> str:
        """The endpoint ``key`` from discovery, with the query ``route`` requires, if any."""
        url = str(self.metadata[key])
        query = self._queries.get(route)
        return f"{url}?{query}" if query else url

    @property
    def token_url(self) -> str:
        """The token endpoint, from discovery."""
        return self.endpoint("token", "token_endpoint")

    @property
    def device_authorization_url(self) -> str:
        """The device authorization endpoint (RFC 8628), from discovery."""
        return self.endpoint("device_authorization", "device_authorization_endpoint")

    @property
    def revocation_url(self) -> str:
        """The revocation endpoint (RFC 7009), from discovery."""
        return self.endpoint("revocation", "revocation_endpoint")

    @property
    def introspection_url(self) -> str:
        """The introspection endpoint (RFC 7662), from discovery."""
        return self.endpoint("introspection", "introspection_endpoint")

    @property
    def authorization_url(self) -> str:
        """The authorization endpoint, from discovery."""
        return self.endpoint("authorization", "authorization_endpoint")

    @property
    def userinfo_url(self) -> str:
        """The userinfo endpoint (a Bearer-protected resource), from discovery."""
        return self.endpoint("userinfo", "userinfo_endpoint")

    def recorded_requests(self) -> list[dict[str, Any]]:
        """Every POST the server got, oldest first, if started with ``record_file``: ``method``,
        ``target`` (path and query as sent), ``contentType``, ``basicClientId`` (from an HTTP
        Basic header, else None) and ``form`` (fields; secret values read ``"*"``). A line is
        written before its response is sent, so a request that was answered is in the file."""
        assert self.record_file is not None, "the server was started without record_file"
        if not self.record_file.exists():
            return []
        lines = self.record_file.read_text().splitlines()
        return [json.loads(line) for line in lines]

    @property
    def grant_errors(self) -> list[str]:
        """The token endpoint's error lines read so far, e.g. ``invalid_grant - refresh token
        already used``; a line may trail its HTTP response, see ``wait_for_grant_error``."""
        prefix = "grant.error "
        with self._output:
            lines = list(self.stderr_lines)
        return [line[len(prefix) :] for line in lines if line.startswith(prefix)]

    def wait_for_grant_error(self, expected: str, timeout: float = 5.0) -> None:
        """Wait until a token-endpoint error line equal to ``expected`` has been read.

        node writes the line before it sends the response, but our reader thread may not
        have read it yet when the test sees that response; the timeout only bounds a miss.
        """
        with self._output:
            if self._output.wait_for(lambda: expected in self.grant_errors, timeout):
                return
        raise AssertionError(f"no grant.error {expected!r}; seen: {self.grant_errors}")

    # -- the user's side ---------------------------------------------------------------------

    def approve_device(self, user_code: str, *, account: str | None = None) -> None:
        """Confirm a device-flow user code in a fresh browser session, as ``account``."""
        page = self._confirm_device(user_code, "confirm", account)
        if page.status_code != 200 or "Sign-in Success" not in page.text:
            raise AssertionError(f"user code not approved: {_page_text(page)}")

    def deny_device(self, user_code: str) -> None:
        """Abort a device-flow user code, so the device's next poll gets ``access_denied``."""
        page = self._confirm_device(user_code, "abort", None)
        if page.status_code != 200 or "request was interrupted" not in page.text:
            raise AssertionError(f"user code not denied: {_page_text(page)}")

    def _confirm_device(
        self, user_code: str, answer: Literal["confirm", "abort"], account: str | None
    ) -> httpx.Response:
        with self._browser() as browser:
            device = f"{self.issuer}/device"
            # verification_uri_complete answers with a self-submitting form holding the xsrf.
            page = browser.get(device, params={"user_code": user_code})
            page = browser.post(device, data={"xsrf": _xsrf(page), "user_code": user_code})
            if 'name="confirm"' not in page.text:
                raise AssertionError(f"no confirmation form for {user_code}: {_page_text(page)}")
            form = {"xsrf": _xsrf(page), "user_code": user_code, answer: "yes"}
            return self._follow(browser, browser.post(device, data=form), account)

    def authorize(self, url: str, *, account: str | None = None) -> str:
        """Open an authorization URL in a fresh browser session, log in and consent as
        ``account``, and return the redirect to the client (``...?code=...&state=...``)."""
        with self._browser() as browser:
            response = self._follow(browser, browser.get(url), account)
        if not response.is_redirect:
            raise AssertionError(f"authorization did not redirect: {_page_text(response)}")
        return str(response.url.join(response.headers["location"]))

    def _browser(self) -> httpx.Client:
        # Its own cookie jar, so each call is a new user-agent with no provider session.
        return httpx.Client(timeout=HTTP_TIMEOUT, follow_redirects=False)

    def _follow(
        self, browser: httpx.Client, response: httpx.Response, account: str | None
    ) -> httpx.Response:
        """Follow redirects within the provider; stop at the first one leaving it."""
        issuer = httpx.URL(self.issuer)
        for _ in range(MAX_REDIRECTS):
            if not response.is_redirect:
                return response
            target = response.url.join(response.headers["location"])
            if (target.scheme, target.host, target.port) != (
                issuer.scheme,
                issuer.host,
                issuer.port,
            ):
                return response
            if account is not None and target.path.startswith("/interaction/"):
                # server.mjs logs the user in as ?account= instead of its default.
                target = target.copy_merge_params({"account": account})
            response = browser.get(target)
        raise AssertionError(f"more than {MAX_REDIRECTS} redirects at {response.url}")

    # -- a resource server's view ------------------------------------------------------------

    def introspect(self, token: str) -> dict[str, Any]:
        """RFC 7662 introspection of any token, authenticated as the confidential basic client."""
        response = httpx.post(
            self.introspection_url,
            data={"token": token},
            auth=self.basic_client.auth,
            timeout=HTTP_TIMEOUT,
        )
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result


def _reader(
    stream: IO[str],
    sink: list[str],
    changed: threading.Condition,
    lines: queue.Queue[str | None] | None,
) -> threading.Thread:
    """Drain a pipe into ``sink`` (so node never blocks on a full pipe), and into ``lines``."""

    def run() -> None:
        for raw in stream:
            line = raw.rstrip("\n")
            with changed:
                sink.append(line)
                changed.notify_all()
            if lines is not None:
                lines.put(line)
        stream.close()
        if lines is not None:
            lines.put(None)  # EOF: the process is gone

    thread = threading.Thread(target=run, name="oidc-server-output", daemon=True)
    thread.start()
    return thread


def _terminate(process: subprocess.Popen[str]) -> None:
    """SIGTERM, then SIGKILL if node does not exit in time; always reaps it."""
    if process.stdin is not None and not process.stdin.closed:
        process.stdin.close()
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _xsrf(page: httpx.Response) -> str:
    match = _XSRF.search(page.text)
    if match is None:
        raise AssertionError(f"no xsrf field on {page.url}: {_page_text(page)}")
    return html.unescape(match.group(1))


def _page_text(response: httpx.Response) -> str:
    """A short, tag-free rendering of an HTML page, for assertion messages."""
    text = re.sub(r"<style.*?</style>|<script.*?</script>|<[^>]+>", " ", response.text, flags=re.S)
    text = html.unescape(" ".join(text.split()))
    return f"HTTP {response.status_code} {response.url}: {text[:300]}"
