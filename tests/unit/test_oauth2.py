"""Standard OAuth2: form bodies, client authentication, RFC 8628 polling, rotation, PKCE."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tvmaniac_refreshd.config.settings import Account, OAuth2Settings, parse_config
from tvmaniac_refreshd.core.errors import (
    ClientRejected,
    LoginFailed,
    RefreshdError,
    SessionRejected,
)
from tvmaniac_refreshd.core.tokens import TokenSet
from tvmaniac_refreshd.providers.base import DeviceCode, PollState
from tvmaniac_refreshd.providers.oauth2 import DEVICE_GRANT, OAuth2Client, id_token_user, pkce_pair
from tvmaniac_refreshd.providers.trakt import TraktClient

NOW = 1_800_000_000
DEVICE = DeviceCode("d" * 40, "WDJB-MJHT", "https://idp.test/device", 600, 5)


def account(**changes: object) -> Account:
    """An oauth2 account; ``changes`` are OAuth2Settings fields, or name/client_id."""
    fields: dict[str, object] = {
        "name": "mail",
        "client_id": "cid:with/odd chars",
        "token_url": "https://idp.test/token",
        "device_authorization_url": "https://idp.test/device",
        "authorization_url": "https://idp.test/authorize",
        "revocation_url": "https://idp.test/revoke",
        "scopes": ("openid", "offline_access"),
    }
    fields.update(changes)
    name, client_id = str(fields.pop("name")), str(fields.pop("client_id"))
    settings = OAuth2Settings(**fields)  # type: ignore[arg-type]
    return Account(name=name, client_id=client_id, settings=settings)


def recording(seen: list[httpx.Request], answer: httpx.Response) -> httpx.Client:
    """An httpx client that keeps every request in ``seen`` and gives each ``answer``."""

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer

    return httpx.Client(transport=httpx.MockTransport(handler))


def client(
    answer: httpx.Response,
    seen: list[httpx.Request],
    secret: str | None = "s3cr:et",
    **changes: object,
) -> OAuth2Client:
    return OAuth2Client(recording(seen, answer), account(**changes), secret)


def form(request: httpx.Request) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(request.content.decode()).items()}


TOKENS = {
    "access_token": "at-1",
    "token_type": "Bearer",
    "expires_in": 3600,
    "refresh_token": "rt-2",
}


class TestClientAuthentication:
    def test_basic_encodes_both_parts(self) -> None:
        """client_secret_basic form-encodes id and secret before Base64 (RFC 6749 §2.3.1)."""
        seen: list[httpx.Request] = []
        client(httpx.Response(200, json=TOKENS), seen).refresh("rt-1", now=NOW)

        expected = base64.b64encode(b"cid%3Awith%2Fodd%20chars:s3cr%3Aet").decode()
        assert seen[0].headers["authorization"] == f"Basic {expected}"
        assert form(seen[0]) == {
            "grant_type": "refresh_token",
            "refresh_token": "rt-1",
            "client_id": "cid:with/odd chars",  # RFC 6749 §3.2.1 allows it; Apereo CAS needs it
        }
        assert seen[0].headers["content-type"] == "application/x-www-form-urlencoded"

    def test_post_puts_the_secret_in_the_form(self) -> None:
        """client_secret_post sends client_id and client_secret as form fields."""
        seen: list[httpx.Request] = []
        client(httpx.Response(200, json=TOKENS), seen, client_auth="client_secret_post").refresh(
            "rt-1", now=NOW
        )

        assert form(seen[0])["client_secret"] == "s3cr:et"
        assert "authorization" not in seen[0].headers

    def test_public_client_sends_only_its_id(self) -> None:
        """client_auth none sends client_id and no secret at all."""
        seen: list[httpx.Request] = []
        client(httpx.Response(200, json=TOKENS), seen, secret=None, client_auth="none").refresh(
            "rt-1", now=NOW
        )

        assert form(seen[0])["client_id"] == "cid:with/odd chars"
        assert "client_secret" not in form(seen[0])

    def test_missing_secret_is_configuration(self) -> None:
        """A confidential method without a secret is a configuration error, sent nowhere."""
        seen: list[httpx.Request] = []
        with pytest.raises(ClientRejected, match="set-secret"):
            client(httpx.Response(200, json=TOKENS), seen, secret=None).refresh("rt", now=NOW)
        assert seen == []


class TestRefresh:
    def test_rotation(self) -> None:
        """A new refresh token in the answer replaces the old one."""
        tokens = client(httpx.Response(200, json=TOKENS), []).refresh("rt-1", now=NOW)

        assert (tokens.refresh_token, tokens.expires_at, tokens.token_type) == (
            "rt-2",
            NOW + 3600,
            "bearer",
        )

    def test_keeps_old_refresh_token_when_none_is_returned(self) -> None:
        """RFC 6749 §6: no refresh_token in the answer means the old one stays valid."""
        body = {key: value for key, value in TOKENS.items() if key != "refresh_token"}

        assert client(httpx.Response(200, json=body), []).refresh(
            "rt-1", now=NOW
        ).refresh_token == ("rt-1")

    def test_missing_expires_in_gets_the_default_lifetime(self) -> None:
        """Without expires_in, the account's default lifetime applies."""
        body = {key: value for key, value in TOKENS.items() if key != "expires_in"}
        tokens = client(httpx.Response(200, json=body), [], default_lifetime=900).refresh(
            "rt", now=NOW
        )

        assert tokens.expires_at == NOW + 900

    @pytest.mark.parametrize(
        ("error", "kind"),
        [("invalid_grant", SessionRejected), ("invalid_client", ClientRejected)],
    )
    def test_rfc6749_errors(self, error: str, kind: type[RefreshdError]) -> None:
        """RFC 6749 error bodies are classified like Trakt's."""
        with pytest.raises(kind):
            client(httpx.Response(400, json={"error": error}), []).refresh("rt", now=NOW)


class TestDeviceFlow:
    def test_device_authorization(self) -> None:
        """The RFC 8628 answer is read; the interval defaults to 5 s; scopes are sent."""
        seen: list[httpx.Request] = []
        body = {
            "device_code": "dc",
            "user_code": "WDJB-MJHT",
            "verification_uri": "https://idp.test/device",
            "verification_uri_complete": "https://idp.test/device?user_code=WDJB-MJHT",
            "expires_in": 900,
        }
        device = client(httpx.Response(200, json=body), seen).request_device_code(now=NOW)

        assert (device.interval, device.verification_url_complete) == (
            5,
            "https://idp.test/device?user_code=WDJB-MJHT",
        )
        assert form(seen[0])["scope"] == "openid offline_access"

    @pytest.mark.parametrize(
        ("error", "expected"),
        [("authorization_pending", PollState.PENDING), ("slow_down", PollState.SLOW_DOWN)],
    )
    def test_waiting_answers(self, error: str, expected: PollState) -> None:
        """authorization_pending keeps waiting; slow_down asks for a wider interval."""
        seen: list[httpx.Request] = []
        answer = client(httpx.Response(400, json={"error": error}), seen).poll_device_token(
            DEVICE, now=NOW
        )

        assert answer is expected
        assert form(seen[0])["grant_type"] == "urn:ietf:params:oauth:grant-type:device_code"

    @pytest.mark.parametrize(
        ("error", "message"),
        [("access_denied", "denied"), ("expired_token", "expired"), ("invalid_grant", "again")],
    )
    def test_final_answers(self, error: str, message: str) -> None:
        """access_denied and expired_token end the login."""
        with pytest.raises(LoginFailed, match=message):
            client(httpx.Response(400, json={"error": error}), []).poll_device_token(
                DEVICE, now=NOW
            )

    def test_no_device_endpoint(self) -> None:
        """Without a device endpoint, the user is pointed at the browser login."""
        with pytest.raises(LoginFailed, match="--browser"):
            client(httpx.Response(200), [], device_authorization_url=None).request_device_code(
                now=NOW
            )

    @settings(max_examples=150, deadline=None)
    @given(
        status=st.integers(min_value=200, max_value=599),
        body=st.binary(max_size=120)
        | st.dictionaries(
            st.sampled_from(
                ["error", "access_token", "expires_in", "refresh_token", "device_code"]
            ),
            st.none() | st.integers() | st.text(max_size=20),
        ).map(lambda value: json.dumps(value).encode()),
    )
    def test_any_answer_is_a_result_or_a_project_error(self, status: int, body: bytes) -> None:
        """Whatever the server answers, the flow returns or raises a RefreshdError."""
        subject = client(httpx.Response(status, content=body), [])
        for call in (
            lambda: subject.request_device_code(now=NOW),
            lambda: subject.poll_device_token(DEVICE, now=NOW),
            lambda: subject.refresh("rt", now=NOW),
        ):
            with contextlib.suppress(RefreshdError):
                call()


class TestBrowserFlow:
    def test_authorization_request_uses_pkce_and_consent(self) -> None:
        """The browser URL carries S256 PKCE, the state, and prompt=consent for offline_access."""
        verifier, challenge = pkce_pair()
        url = client(httpx.Response(200), []).authorization_request(
            "http://127.0.0.1:5555/callback", "st4te", challenge
        )
        query = {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}
        digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")

        assert query["code_challenge"] == digest.decode() == challenge
        assert (query["code_challenge_method"], query["state"], query["prompt"]) == (
            "S256",
            "st4te",
            "consent",
        )
        assert 43 <= len(verifier) <= 128

    def test_revoke_sends_the_refresh_token(self) -> None:
        """RFC 7009 revocation of the refresh token, with its type hint."""
        seen: list[httpx.Request] = []
        client(httpx.Response(200), seen).revoke(TokenSet("at", "rt-9", 0, 10, 10), now=NOW)

        assert form(seen[0]) == {"token": "rt-9", "token_type_hint": "refresh_token"}
        assert str(seen[0].url) == "https://idp.test/revoke"


DEVICE_ANSWER = {
    "device_code": "dc",
    "user_code": "WDJB-MJHT",
    "verification_uri": "https://idp.test/device",
    "expires_in": 600,
}
ID = "cid:with/odd chars"
# Each request's form fields, as the RFC examples show them, by client authentication; "secret"
# stands for client_secret. HTTP Basic carries the id in the header, so the body only repeats
# client_id where the example does (RFC 8628 §3.1, §3.4) or a common server needs it (§6).
REQUESTS: dict[str, tuple[dict[str, str], bool]] = {
    # name: (fields besides the client's, whether the body has client_id even with Basic)
    "device_authorization": ({"scope": "openid offline_access"}, True),
    "device_token": ({"grant_type": DEVICE_GRANT, "device_code": "d" * 40}, True),
    "code_exchange": (
        {
            "grant_type": "authorization_code",
            "code": "code-1",
            "redirect_uri": "http://127.0.0.1:5/callback",
            "code_verifier": "v" * 43,
        },
        False,
    ),
    "refresh": ({"grant_type": "refresh_token", "refresh_token": "rt-1"}, True),
    "revocation": ({"token": "rt-9", "token_type_hint": "refresh_token"}, False),
}


def send(name: str, subject: OAuth2Client) -> None:
    """Make request ``name`` once; its answer does not matter here."""
    with contextlib.suppress(RefreshdError):
        if name == "device_authorization":
            subject.request_device_code(now=NOW)
        elif name == "device_token":
            subject.poll_device_token(DEVICE, now=NOW)
        elif name == "code_exchange":
            subject.exchange_code(
                "code-1", verifier="v" * 43, redirect_uri="http://127.0.0.1:5/callback", now=NOW
            )
        elif name == "refresh":
            subject.refresh("rt-1", now=NOW)
        else:
            subject.revoke(TokenSet("at", "rt-9", 0, 10, 10), now=NOW)


class TestRequestShapes:
    @pytest.mark.parametrize("name", list(REQUESTS))
    @pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post", "none"])
    def test_body_is_the_rfc_example(self, name: str, method: str) -> None:
        """Exactly the RFC example's fields, plus the client's own as RFC 6749 §2.3.1 says."""
        seen: list[httpx.Request] = []
        secret = None if method == "none" else "s3cr:et"
        send(name, client(httpx.Response(200, json=TOKENS), seen, secret, client_auth=method))
        fields, id_always = REQUESTS[name]
        expected = dict(fields)
        if id_always or method != "client_secret_basic":
            expected["client_id"] = ID
        if method == "client_secret_post":
            expected["client_secret"] = "s3cr:et"

        assert len(seen) == 1
        assert form(seen[0]) == expected
        assert seen[0].headers["content-type"] == "application/x-www-form-urlencoded"
        assert ("authorization" in seen[0].headers) == (method == "client_secret_basic")

    def test_device_authorization_with_basic_names_the_client_twice(self) -> None:
        """The failure this fixes: oauthlib-based servers need client_id in the body."""
        seen: list[httpx.Request] = []
        client(httpx.Response(200, json=DEVICE_ANSWER), seen).request_device_code(now=NOW)

        assert form(seen[0])["client_id"] == ID
        expected = base64.b64encode(b"cid%3Awith%2Fodd%20chars:s3cr%3Aet").decode()
        assert seen[0].headers["authorization"] == f"Basic {expected}"


WRITTEN = {
    "token_url": "https://idp.test/o/token/?p=B2C_1_signin&x=%2F",
    "device_authorization_url": "https://idp.test/o/device/",
    "revocation_url": "https://idp.test/o/revoke/?p=B2C_1_signin",
    "authorization_url": "https://idp.test/o/authorize/?p=B2C_1_signin",
}


class TestEndpointsAsWritten:
    @pytest.mark.parametrize(
        ("name", "key"),
        [
            ("device_authorization", "device_authorization_url"),
            ("device_token", "token_url"),
            ("code_exchange", "token_url"),
            ("refresh", "token_url"),
            ("revocation", "revocation_url"),
        ],
    )
    def test_request_goes_to_the_configured_bytes(self, name: str, key: str) -> None:
        """From the config file to the request line: trailing slash and query untouched."""
        text = '[accounts.mail]\nprovider = "oauth2"\nclient_id = "c"\n'
        text += "".join(f'{k} = "{v}"\n' for k, v in WRITTEN.items())
        configured = parse_config(text).select(None)
        seen: list[httpx.Request] = []
        http = recording(seen, httpx.Response(200, json=TOKENS))
        send(name, OAuth2Client(http, configured, "secret"))

        assert str(seen[0].url) == WRITTEN[key]
        assert seen[0].url.raw_path == WRITTEN[key].removeprefix("https://idp.test").encode()

    def test_authorization_request_appends_to_the_query(self) -> None:
        """The browser URL keeps the configured query and adds ours after '&'."""
        url = client(httpx.Response(200), [], authorization_url=WRITTEN["authorization_url"])
        request = url.authorization_request("http://127.0.0.1:5/callback", "st", "ch")

        assert request.startswith(WRITTEN["authorization_url"] + "&response_type=code&")
        assert parse_qs(urlsplit(request).query)["p"] == ["B2C_1_signin"]


class TestTraktBaseUrl:
    @pytest.mark.parametrize("written", ["https://auth.test/base", "https://auth.test/base/"])
    def test_paths_join_with_one_slash(self, written: str) -> None:
        """Trakt's auth_url is a base: with or without its slash, /oauth/token follows once."""
        text = f'[accounts.t]\nprovider = "trakt"\nclient_id = "c"\nauth_url = "{written}"\n'
        seen: list[httpx.Request] = []
        http = recording(seen, httpx.Response(200, json={**TOKENS, "created_at": NOW}))
        TraktClient(http, parse_config(text).select(None), None).refresh("rt", now=NOW)

        assert str(seen[0].url) == "https://auth.test/base/oauth/token"


def id_token(claims: object) -> str:
    """An unsigned JWT with ``claims``: only the payload is read."""
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"eyJhbGciOiJub25lIn0.{payload}.sig"


class TestWhoLoggedIn:
    @pytest.mark.parametrize(
        ("token", "user"),
        [
            (id_token({"sub": "248289761001", "preferred_username": "j.doe"}), "j.doe"),
            (id_token({"sub": "248289761001"}), "248289761001"),
            (id_token({"sub": "evil\x1b[2Jname"}), "evil[2Jname"),  # no terminal escapes
            (id_token(["not", "claims"]), None),
            ("not-a-jwt", None),
            ("a.%%%.c", None),
            (None, None),
        ],
    )
    def test_the_id_token_names_the_user(self, token: object, user: str | None) -> None:
        assert id_token_user(token) == user

    def test_identity_is_the_last_token_responses(self) -> None:
        """After the code exchange, `identity` names whom the ID token named."""
        body = {
            "access_token": "at-1",
            "refresh_token": "rt-1",
            "expires_in": 3600,
            "token_type": "Bearer",
            "id_token": id_token({"sub": "s-1", "preferred_username": "alice"}),
        }
        subject = client(httpx.Response(200, json=body), [])
        tokens = subject.exchange_code(
            "code-1", verifier="v" * 43, redirect_uri="http://127.0.0.1:5/callback", now=NOW
        )

        assert subject.identity(tokens, now=NOW) == "alice"
