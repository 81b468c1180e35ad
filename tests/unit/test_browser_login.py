"""The browser login's loopback listener with real sockets and a fake provider: the start link,
the addresses it listens on, idle connections, the deadline, and whose connections it answers.

The clock is injected: the deadline passes because the test says so, never by waiting.
"""

from __future__ import annotations

import io
import os
import re
import socket
import threading
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.support.harness import wait_until
from tvmaniac_refreshd.core.errors import LoginFailed
from tvmaniac_refreshd.core.tokens import TokenSet
from tvmaniac_refreshd.providers import browser_login as module
from tvmaniac_refreshd.providers.browser_login import browser_login
from tvmaniac_refreshd.providers.peer_uid import peer_uid

TOKENS = TokenSet("a" * 40, "r" * 40, 0, 3600, 3600)
AUTHORIZE = "https://idp.test/authorize"


class FakeLogin:
    """A provider's half of the flow: builds the URL, takes any code and records it."""

    registered_redirect_uri: str | None = None

    def __init__(self) -> None:
        self.codes: list[str] = []

    def authorization_request(self, redirect_uri: str, state: str, challenge: str) -> str:
        query = httpx.QueryParams(
            {"redirect_uri": redirect_uri, "state": state, "code_challenge": challenge}
        )
        return f"{AUTHORIZE}?{query}"

    def exchange_code(self, code: str, *, verifier: str, redirect_uri: str, now: float) -> TokenSet:
        self.codes.append(code)
        return TOKENS


class Login:
    """``browser_login`` in a thread, as `login --browser` runs it, with an injected clock."""

    def __init__(self, redirect_uri: str | None = None, *, port: int = 0) -> None:
        self.client = FakeLogin()
        self.out = io.StringIO()
        self.opened: list[str] = []
        self.now = 0.0
        self.result: TokenSet | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(redirect_uri, port), daemon=True)
        self.thread.start()

    def _run(self, redirect_uri: str | None, port: int) -> None:
        try:
            self.result = browser_login(
                self.client,
                port=port,
                out=self.out,
                open_browser=self.opened.append,
                clock=lambda: self.now,
                timeout=100.0,
                redirect_uri=redirect_uri,
            )
        except BaseException as exc:  # the test asserts on it
            self.error = exc

    def port(self) -> int:
        """The port it listens on, from the `ssh -L PORT:...` advice it prints."""
        wait_until(
            lambda: "ssh -L" in self.out.getvalue() or not self.thread.is_alive(),
            timeout=60,
            what="the listener",
        )
        found = re.search(r"ssh -L (\d+):", self.out.getvalue())
        assert found, (self.out.getvalue(), self.error)
        return int(found.group(1))

    def printed_link(self) -> str:
        self.port()
        found = re.search(r"^  (http\S+)$", self.out.getvalue(), re.MULTILINE)
        assert found
        return found.group(1)

    def finish(self) -> None:
        self.thread.join(timeout=60)
        assert not self.thread.is_alive(), "the login is still waiting"


def authorization_url(login: Login, browser: httpx.Client) -> str:
    """What the user's browser gets from the printed link."""
    started = browser.get(login.printed_link())
    assert started.status_code == 302
    return started.headers["location"]


def callback(url: str, code: str) -> str:
    """The provider's redirect back, as it would send the browser there."""
    query = parse_qs(urlsplit(url).query)
    back = httpx.QueryParams({"code": code, "state": query["state"][0]})
    return f"{query['redirect_uri'][0]}?{back}"


class TestStartLink:
    def test_no_argv_gets_the_state_or_the_challenge(self) -> None:
        """The browser is handed our start link; state and challenge travel in its redirect."""
        login = Login()
        with httpx.Client(timeout=30) as browser:
            url = authorization_url(login, browser)
            assert browser.get(callback(url, "code-1")).status_code == 200
        login.finish()

        assert login.result == TOKENS
        assert login.client.codes == ["code-1"]
        assert len(login.opened) == 1
        opened = login.opened[0]
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/start/[\w-]{20,}", opened)
        state = parse_qs(urlsplit(url).query)["state"][0]
        challenge = parse_qs(urlsplit(url).query)["code_challenge"][0]
        assert state not in opened
        assert challenge not in opened
        assert state not in login.out.getvalue()

    def test_the_start_link_works_once(self) -> None:
        login = Login()
        with httpx.Client(timeout=30) as browser:
            link = login.printed_link()
            first = browser.get(link)
            second = browser.get(link)
            assert browser.get(callback(first.headers["location"], "c")).status_code == 200
        login.finish()

        assert first.status_code == 302
        assert first.headers["location"].startswith(AUTHORIZE)
        assert second.status_code == 404


class TestIdleConnections:
    def test_an_idle_connection_does_not_hold_the_redirect(self) -> None:
        """A connection that never sends a byte (a browser's preconnect) delays nothing."""
        login = Login()
        port = login.port()
        with socket.create_connection(("127.0.0.1", port)), httpx.Client(timeout=30) as browser:
            url = authorization_url(login, browser)
            assert browser.get(callback(url, "code-2")).status_code == 200
            login.finish()

        assert login.client.codes == ["code-2"]

    def test_the_deadline_passes_while_a_connection_is_idle(self) -> None:
        """The deadline is the accepting loop's, not a handler's: an idle connection cannot
        keep the login waiting past it."""
        login = Login()
        port = login.port()
        with socket.create_connection(("127.0.0.1", port)) as idle:
            idle.sendall(b"GET /")  # and nothing more
            login.now = 101.0
            login.finish()

        assert isinstance(login.error, LoginFailed)
        assert "in time" in str(login.error)


class TestAddresses:
    def test_an_ipv6_redirect_is_listened_on_at_ipv6(self) -> None:
        """http://[::1]:PORT/... is reached at ::1 (it never was: the listener was IPv4)."""
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
            port = probe.getsockname()[1]
        login = Login(f"http://[::1]:{port}/cb", port=port)
        with httpx.Client(timeout=30) as browser:
            url = authorization_url(login, browser)
            assert browser.get(callback(url, "code-6")).status_code == 200
        login.finish()

        assert login.opened[0].startswith(f"http://[::1]:{port}/start/")
        assert login.client.codes == ["code-6"]

    @pytest.mark.parametrize("taken", ["127.0.0.1", "::1"])
    def test_localhost_fails_if_either_family_is_taken(self, taken: str) -> None:
        """`localhost` is both 127.0.0.1 and ::1 on one port; a port another program holds in
        either family would receive the code from a browser that tries that family first."""
        family = socket.AF_INET6 if ":" in taken else socket.AF_INET
        with socket.socket(family) as squatter:
            squatter.bind((taken, 0))
            squatter.listen()
            port = squatter.getsockname()[1]
            login = Login(f"http://localhost:{port}/cb", port=port)
            login.finish()

        assert isinstance(login.error, LoginFailed)
        shown = f"[{taken}]" if ":" in taken else taken
        assert f"cannot listen on {shown}:{port}" in str(login.error)

    def test_localhost_answers_on_both_families(self) -> None:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
            port = probe.getsockname()[1]
        login = Login(f"http://localhost:{port}/cb", port=port)
        login.port()
        with httpx.Client(timeout=30) as browser:
            # The start link over IPv4, the redirect back over IPv6, as a browser may.
            started = browser.get(f"http://127.0.0.1:{port}/start/nothing")
            assert started.status_code == 404
            url = authorization_url(login, browser)
            back = callback(url, "code-7").replace("localhost", "[::1]")
            assert browser.get(back).status_code == 200
        login.finish()

        assert login.client.codes == ["code-7"]


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="Linux's socket tables")
class TestOtherUsers:
    def test_peer_uid_names_the_owner_of_the_other_end(self) -> None:
        with socket.socket() as server:
            server.bind(("127.0.0.1", 0))
            server.listen()
            with socket.create_connection(server.getsockname()) as client:
                accepted, peer = server.accept()
                with accepted:
                    ours = accepted.getsockname()

                    assert peer_uid((ours[0], ours[1]), (peer[0], peer[1])) == os.getuid()
                    assert client.getsockname() == peer

    def test_peer_uid_reads_the_kernel_table(self, tmp_path: Path) -> None:
        """The kernel's spelling: host-order words, so 127.0.0.1:8765 from :40000 of uid 1001."""
        little = socket.htonl(1) != 1
        ip = "0100007F" if little else "7F000001"
        (tmp_path / "tcp").write_text(
            "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid\n"
            f"   0: {ip}:223D {ip}:9C40 01 00000000:00000000 00:00000000 00000000  0 0 1\n"
            f"   1: {ip}:9C40 {ip}:223D 01 00000000:00000000 00:00000000 00000000  1001 0 2\n"
        )

        found = peer_uid(("127.0.0.1", 8765), ("127.0.0.1", 40000), proc_net=tmp_path)

        assert found == 1001
        assert peer_uid(("127.0.0.1", 8765), ("127.0.0.1", 1), proc_net=tmp_path) is None

    def test_a_connection_of_another_uid_is_refused(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Seen from a listener that belongs to another uid, this process is the other user:
        its requests are refused, and the login says so. (The integration test uses a real
        second user.)"""
        monkeypatch.setattr(module, "owner_uid", lambda: os.getuid() + 4242)
        login = Login()
        with httpx.Client(timeout=30) as browser:
            refused = browser.get(login.printed_link())
            login.now = 101.0
            login.finish()

        assert refused.status_code == 403
        assert isinstance(login.error, LoginFailed)
        assert login.client.codes == []
        assert f"uid {os.getuid()}" in login.out.getvalue()
