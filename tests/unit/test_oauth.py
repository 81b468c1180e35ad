"""Trakt's OAuth dialect: request shapes, and one classification of every response."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tvmaniac_refreshd.config.settings import Account, TraktSettings
from tvmaniac_refreshd.core.errors import (
    AccountLocked,
    ClientRejected,
    LoginFailed,
    ProviderIncompatible,
    ProviderRefused,
    RefreshdError,
    SessionRejected,
    TransientError,
)
from tvmaniac_refreshd.core.tokens import TokenSet
from tvmaniac_refreshd.providers.base import DeviceCode, PollState
from tvmaniac_refreshd.providers.http import USER_AGENT, parse_retry_after
from tvmaniac_refreshd.providers.trakt import TraktClient

NOW = 1_800_000_000
ACCOUNT = Account(
    name="default", client_id="cid", settings=TraktSettings(auth_url="https://auth.test")
)
TOKEN_BODY = {
    "access_token": "a" * 64,
    "token_type": "bearer",
    "expires_in": 604800,
    "refresh_token": "n" * 64,
    "scope": "public",
    "created_at": NOW,
}
DEVICE = DeviceCode("d" * 64, "ABCD1234", "https://trakt.tv/activate", 600, 5)

Handler = Callable[[httpx.Request], httpx.Response]


def client_for(handler: Handler, seen: list[httpx.Request] | None = None) -> TraktClient:
    def record(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        return handler(request)

    http = httpx.Client(
        transport=httpx.MockTransport(record),
        headers={"User-Agent": USER_AGENT},
        timeout=httpx.Timeout(5.0),
    )
    return TraktClient(http, ACCOUNT, "csecret")


def reply(status: int, body: object = None, **headers: str) -> Handler:
    def handler(_request: httpx.Request) -> httpx.Response:
        if isinstance(body, str | bytes):
            return httpx.Response(status, content=body, headers=headers)
        if body is None:
            return httpx.Response(status, headers=headers)
        return httpx.Response(status, json=body, headers=headers)

    return handler


class TestRefresh:
    def test_request_shape(self) -> None:
        """A refresh posts Trakt's JSON body to auth_url with the required headers."""
        seen: list[httpx.Request] = []
        tokens = client_for(reply(200, TOKEN_BODY), seen).refresh("r" * 64, now=NOW)

        request = seen[0]
        assert (request.method, str(request.url)) == ("POST", "https://auth.test/oauth/token")
        assert json.loads(request.content) == {
            "refresh_token": "r" * 64,
            "client_id": "cid",
            "client_secret": "csecret",
            "redirect_uri": "urn:ietf:wg:oauth:2.0:oob",
            "grant_type": "refresh_token",
        }
        assert request.headers["user-agent"].startswith("tvmaniac-refreshd/")
        assert request.headers["trakt-api-version"] == "2"
        assert request.headers["trakt-api-key"] == "cid"
        assert request.headers["content-type"] == "application/json"
        assert tokens.refresh_token == "n" * 64

    @pytest.mark.parametrize(
        ("handler", "error", "message"),
        [
            (
                reply(400, {"error": "invalid_grant", "error_description": "x"}),
                SessionRejected,
                "invalid_grant",
            ),
            (
                reply(
                    401, None, **{"WWW-Authenticate": 'Bearer realm="Trakt", error="invalid_token"'}
                ),
                SessionRejected,
                "invalid_token",
            ),
            (reply(401, {"error": "invalid_client"}), ClientRejected, "client_id"),
            (reply(400, {"error": "invalid_client"}), ClientRejected, "client_id"),
            (reply(403, None), ClientRejected, "HTTP 403"),
            (
                reply(403, None, server="cloudflare", **{"X-Request-Id": "1", "CF-Ray": "x"}),
                ClientRejected,
                "HTTP 403",
            ),
            (
                reply(
                    403,
                    "<html>Sorry, you have been blocked</html>",
                    server="cloudflare",
                    **{"content-type": "text/html"},
                ),
                TransientError,
                "Cloudflare",
            ),
            (reply(408, None), TransientError, "HTTP 408"),
            (reply(429, "slow", **{"Retry-After": "143"}), TransientError, "wait 143s"),
            (reply(429, None), TransientError, "rate limited"),
            (reply(500, {"error": "x"}), TransientError, "HTTP 500"),
            (reply(502, None), TransientError, "HTTP 502"),
            (reply(503, None), TransientError, "HTTP 503"),
            (reply(504, None), TransientError, "HTTP 504"),
            (
                reply(520, "<html>cf</html>", **{"content-type": "text/html"}),
                TransientError,
                "HTTP 520",
            ),
            (reply(522, None), TransientError, "HTTP 522"),
            (reply(524, None), TransientError, "HTTP 524"),
            (
                reply(200, "<!DOCTYPE html><p>portal</p>", **{"content-type": "text/html"}),
                TransientError,
                "HTML",
            ),
            # A 200 that cannot be used: a compatibility problem (1), never "try later" (75).
            (reply(200, {"access_token": "a" * 64}), ProviderIncompatible, "could not be used"),
            (reply(200, [1, 2]), ProviderIncompatible, "a JSON array, not a JSON object"),
            (reply(200, "{trunc"), ProviderIncompatible, "not JSON"),
            (reply(423, None, **{"X-Account-Locked": "true"}), AccountLocked, "locked"),
            (reply(400, {"error": "invalid_request"}), ProviderRefused, "HTTP 400"),
            (reply(404, None), ProviderRefused, "HTTP 404"),
        ],
    )
    def test_classification(
        self, handler: Handler, error: type[RefreshdError], message: str
    ) -> None:
        """Every outcome maps to one error class, whose message never holds a token."""
        with pytest.raises(RefreshdError, match=message) as caught:
            client_for(handler).refresh("r" * 64, now=NOW)

        assert type(caught.value) is error
        assert "r" * 64 not in str(caught.value)

    def test_retry_after_carried(self) -> None:
        """A 429's Retry-After reaches the caller as seconds."""
        with pytest.raises(TransientError) as caught:
            client_for(reply(429, None, **{"Retry-After": "143"})).refresh("r", now=NOW)

        assert caught.value.retry_after == 143

    @pytest.mark.parametrize(
        "exc",
        [
            httpx.ConnectError("[Errno 111] Connection refused"),
            httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED]"),
            httpx.ConnectTimeout("slow"),
            httpx.ReadTimeout("slow"),
            httpx.ReadError("reset"),
            httpx.RemoteProtocolError("Server disconnected without sending a response."),
            httpx.ProxyError("proxy"),
            httpx.WriteError("pipe"),
            httpx.PoolTimeout("pool"),
        ],
    )
    def test_transport_errors_are_transient(self, exc: Exception) -> None:
        """Network, DNS, TLS and timeout failures are all 'try again later'."""

        def raise_(_request: httpx.Request) -> httpx.Response:
            raise exc

        with pytest.raises(TransientError, match=r"auth\.test"):
            client_for(raise_).refresh("r", now=NOW)

    def test_huge_body_capped(self) -> None:
        """A body larger than any token response is not read into memory."""
        with pytest.raises(TransientError, match="larger than"):
            client_for(reply(200, b"x" * (1024 * 1024))).refresh("r", now=NOW)

    def test_no_secret_when_none(self) -> None:
        """Without a client secret, the field is left out (Trakt deprecated it)."""
        seen: list[httpx.Request] = []

        def record(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            return reply(200, TOKEN_BODY)(request)

        http = httpx.Client(transport=httpx.MockTransport(record))
        TraktClient(http, ACCOUNT, None).refresh("r", now=NOW)

        assert "client_secret" not in json.loads(seen[0].content)


class TestDeviceFlow:
    def test_device_code(self) -> None:
        """The device-code answer is parsed and validated."""
        body = {
            "device_code": "d" * 64,
            "user_code": "ABCD1234",
            "verification_url": "https://trakt.tv/activate",
            "expires_in": 600,
            "interval": 5,
        }
        seen: list[httpx.Request] = []
        device = client_for(reply(200, body), seen).request_device_code(now=NOW)

        assert (device.user_code, device.interval, device.expires_in) == ("ABCD1234", 5, 600)
        assert json.loads(seen[0].content) == {"client_id": "cid"}

    def test_unknown_client_id(self) -> None:
        """An unknown client_id (403) is a configuration problem."""
        with pytest.raises(ClientRejected):
            client_for(reply(403, None)).request_device_code(now=NOW)

    def test_malformed_device_code(self) -> None:
        """A device-code answer missing fields is a compatibility problem, naming the field."""
        with pytest.raises(ProviderIncompatible, match="user_code is missing"):
            client_for(reply(200, {"device_code": "x"})).request_device_code(now=NOW)

    @pytest.mark.parametrize(
        ("handler", "expected"),
        [(reply(400, b""), PollState.PENDING), (reply(429, b""), PollState.SLOW_DOWN)],
    )
    def test_poll_waiting(self, handler: Handler, expected: PollState) -> None:
        """400 with an empty non-JSON body is pending; 429 is slow down."""

        assert expected == client_for(handler).poll_device_token(DEVICE, now=NOW)

    @pytest.mark.parametrize(
        ("status", "message"),
        [(404, "does not know"), (409, "already used"), (410, "expired"), (418, "denied")],
    )
    def test_poll_terminal(self, status: int, message: str) -> None:
        """404, 409, 410 and 418 end the login with a reason."""
        with pytest.raises(LoginFailed, match=message):
            client_for(reply(status, b"")).poll_device_token(DEVICE, now=NOW)

    def test_poll_body(self) -> None:
        """Trakt's poll sends `code`, not RFC 8628's `device_code`, and no grant_type."""
        seen: list[httpx.Request] = []
        tokens = client_for(reply(200, TOKEN_BODY), seen).poll_device_token(DEVICE, now=NOW)

        assert json.loads(seen[0].content) == {
            "code": "d" * 64,
            "client_id": "cid",
            "client_secret": "csecret",
        }
        assert not isinstance(tokens, PollState)


class TestRevoke:
    def test_revoke_body(self) -> None:
        """Revoke sends the access token in the `token` field."""
        seen: list[httpx.Request] = []
        client_for(reply(200, b""), seen).revoke(TokenSet("a" * 64, "r" * 64, 0, 10, 10), now=NOW)

        assert json.loads(seen[0].content)["token"] == "a" * 64
        assert str(seen[0].url) == "https://auth.test/oauth/revoke"


class TestRetryAfter:
    @pytest.mark.parametrize(
        ("value", "seconds"),
        [
            ("143", 143.0),
            (None, None),
            ("", None),
            ("soon", None),
            ("99999999", 86400.0),
            ("Fri, 15 Jan 2027 08:02:23 GMT", 143.0),  # NOW is 2027-01-15 08:00:00 UTC
            ("Fri, 15 Jan 2027 07:00:00 GMT", 0.0),
        ],
    )
    def test_forms(self, value: str | None, seconds: float | None) -> None:
        """Seconds and HTTP dates are understood; junk is ignored; waits are capped."""

        assert seconds == parse_retry_after(value, now=NOW)


class TestAnyResponse:
    @settings(max_examples=300, deadline=None)
    @given(
        status=st.integers(min_value=100, max_value=599),
        body=st.binary(max_size=300)
        | st.sampled_from(
            [b'{"error": "invalid_grant"}', b"[]", b"{}", b"<html></html>", b'{"error": 5}']
        ),
        headers=st.dictionaries(
            st.sampled_from(
                ["content-type", "retry-after", "www-authenticate", "server", "cf-ray"]
            ),
            st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40),
        ),
    )
    def test_only_project_errors(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        """Whatever the server answers, a refresh returns tokens or raises a RefreshdError."""
        if 100 <= status < 200:
            status = 200
        client = client_for(reply(status, body, **headers))
        message = ""
        try:
            client.refresh("r" * 64, now=NOW)
        except RefreshdError as exc:
            message = str(exc)

        assert "r" * 64 not in message

    @settings(max_examples=200, deadline=None)
    @given(
        status=st.integers(min_value=100, max_value=599),
        body=st.binary(max_size=200)
        | st.dictionaries(
            st.sampled_from(
                ["device_code", "user_code", "verification_url", "expires_in", "interval"]
            ),
            st.none() | st.booleans() | st.integers() | st.text(max_size=30),
        ).map(lambda value: json.dumps(value).encode()),
    )
    def test_device_flow_only_project_errors(self, status: int, body: bytes) -> None:
        """Device-code and polling answers of any shape give a result or a RefreshdError."""
        status = max(status, 200)
        client = client_for(reply(status, body, **{"content-type": "application/json"}))
        for call in (
            lambda: client.request_device_code(now=NOW),
            lambda: client.poll_device_token(DEVICE, now=NOW),
        ):
            message = ""
            try:
                call()
            except RefreshdError as exc:
                message = str(exc)

            assert "d" * 64 not in message
