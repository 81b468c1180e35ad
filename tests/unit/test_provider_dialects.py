"""What real providers send, beside what the RFCs send: field names, numbers as strings, their
own error words; a 200 that spent a grant is never thrown away; a malformed answer is a
compatibility problem (exit 1, or 78 for the wrong endpoint), not a passing one (75)."""

from __future__ import annotations

import io
from collections.abc import Iterator

import httpx
import pytest

from tvmaniac_refreshd.config.settings import Account, OAuth2Settings
from tvmaniac_refreshd.core.errors import (
    EXIT_CONFIG,
    EXIT_FAILURE,
    LoginFailed,
    ProviderIncompatible,
    ProviderRefused,
    SessionRejected,
    TransientError,
    WrongEndpoint,
)
from tvmaniac_refreshd.core.tokens import TokenSet
from tvmaniac_refreshd.providers.base import DeviceCode, PollState
from tvmaniac_refreshd.providers.device_login import wait_for_approval
from tvmaniac_refreshd.providers.dialects import canonical_error
from tvmaniac_refreshd.providers.oauth2 import OAuth2Client

NOW = 1_800_000_000
DEVICE = DeviceCode("d" * 40, "WDJB-MJHT", "https://idp.test/device", 600, 5)
PAIR = {"access_token": "at-1", "refresh_token": "rt-1", "token_type": "Bearer"}


def account(**changes: object) -> Account:
    """An oauth2 account; ``changes`` are OAuth2Settings fields."""
    fields: dict[str, object] = {
        "client_auth": "none",
        "token_url": "https://idp.test/token",
        "device_authorization_url": "https://idp.test/device",
        "authorization_url": "https://idp.test/authorize",
        "scopes": ("openid", "offline_access"),
    }
    fields.update(changes)
    settings = OAuth2Settings(**fields)  # type: ignore[arg-type]
    return Account(name="mail", client_id="cid", settings=settings)


def answering(
    *answers: httpx.Response, seen: list[httpx.Request] | None = None, **changes: object
) -> OAuth2Client:
    """A client whose server gives ``answers`` in turn (the last one again and again)."""
    queue: Iterator[httpx.Response] = iter(answers)
    last = answers[-1]

    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        return next(queue, last)

    return OAuth2Client(
        httpx.Client(transport=httpx.MockTransport(handler)), account(**changes), None
    )


def reply(status: int, body: object) -> httpx.Response:
    return httpx.Response(status, json=body)


def aad(error: str, code: int | None) -> httpx.Response:
    """Microsoft's error body: the AADSTS number in the description and in error_codes."""
    return reply(
        400,
        {
            "error": error,
            "error_description": f"AADSTS{code}: text\r\nTrace ID: x" if code else "text",
            "error_codes": [code] if code else [],
            "trace_id": "t",
            "correlation_id": "c",
        },
    )


class TestDeviceAnswer:
    def test_google_verification_url(self) -> None:
        """Google names it verification_url (its "TV and Limited-Input" guide), not _uri."""
        device = answering(
            reply(
                200,
                {
                    "device_code": "4/abc",
                    "user_code": "GQVQ-JKEC",
                    "verification_url": "https://www.google.com/device",
                    "expires_in": 1800,
                    "interval": 5,
                },
            )
        ).request_device_code(now=NOW)

        assert device.verification_url == "https://www.google.com/device"
        assert device.verification_url_complete is None

    def test_numbers_as_strings(self) -> None:
        """Azure AD v1 and AD FS send "expires_in": "900" and "interval": "5"."""
        device = answering(
            reply(
                200,
                {
                    "device_code": "dc",
                    "user_code": "ABC",
                    "verification_url": "https://microsoft.com/devicelogin",
                    "verification_url_complete": "https://microsoft.com/devicelogin?c=ABC",
                    "expires_in": "900",
                    "interval": "5",
                },
            )
        ).request_device_code(now=NOW)

        assert (device.expires_in, device.interval) == (900, 5)
        assert device.verification_url_complete == "https://microsoft.com/devicelogin?c=ABC"

    def test_malformed_answer_names_field_and_value_and_exits_1(self) -> None:
        body = {"device_code": "dc", "user_code": "U", "verification_uri": "https://x/d"}
        with pytest.raises(ProviderIncompatible) as caught:
            answering(reply(200, {**body, "expires_in": "soon"})).request_device_code(now=NOW)

        assert 'expires_in is "soon"' in str(caught.value)
        assert caught.value.exit_code == EXIT_FAILURE

    def test_missing_field_lists_what_the_answer_has(self) -> None:
        body = {"device_code": "dc", "user_code": "U", "expires_in": 60, "link": "x"}
        with pytest.raises(
            ProviderIncompatible,
            match=r"verification_uri is missing \(the answer has: device_code, expires_in, link, "
            r"user_code\)",
        ):
            answering(reply(200, body)).request_device_code(now=NOW)

    def test_an_answer_of_another_endpoint_is_the_configs_fault(self) -> None:
        """A discovery document where the device answer should be: 78, naming the key."""
        with pytest.raises(WrongEndpoint, match="device_authorization_url") as caught:
            answering(reply(200, {"issuer": "https://idp.test"})).request_device_code(now=NOW)

        assert caught.value.exit_code == EXIT_CONFIG

    def test_invalid_scope_in_the_device_flow_points_at_the_browser(self) -> None:
        """Google refuses its mail scope in the device flow: say how to go on."""
        client = answering(
            reply(
                400, {"error": "invalid_scope", "error_description": "Invalid device flow scope"}
            ),
            scopes=("https://mail.google.com/",),
        )
        with pytest.raises(ProviderRefused, match="login --browser") as caught:
            client.request_device_code(now=NOW)

        assert "only in the browser flow" in str(caught.value)


class TestErrorWords:
    @pytest.mark.parametrize(
        ("code", "body", "expected"),
        [
            ("authorization_declined", {}, "access_denied"),
            ("bad_verification_code", {}, "invalid_grant"),
            ("deleted_client", {}, "invalid_client"),
            ("consent_required", {}, "interaction_required"),
            ("invalid_grant", {"error_codes": [70016]}, "authorization_pending"),
            ("invalid_grant", {"error_codes": [70019]}, "expired_token"),
            ("invalid_request", {"error_codes": [7000215]}, "invalid_client"),
            ("invalid_grant", {"error_codes": [50076]}, "interaction_required"),
            ("slow_down", {}, "slow_down"),
            ("authorization_pending", {"error_codes": ["70016"]}, "authorization_pending"),
        ],
    )
    def test_canonical(self, code: str, body: dict[str, object], expected: str) -> None:
        assert canonical_error(code, body) == expected

    def test_microsoft_declined_is_a_denied_login(self) -> None:
        with pytest.raises(LoginFailed, match="denied"):
            answering(aad("authorization_declined", None)).poll_device_token(DEVICE, now=NOW)

    def test_microsoft_pending_with_its_error_body(self) -> None:
        state = answering(aad("authorization_pending", 70016)).poll_device_token(DEVICE, now=NOW)

        assert state is PollState.PENDING

    def test_google_428_pending_and_403_slow_down(self) -> None:
        client = answering(
            reply(428, {"error": "authorization_pending", "error_description": "Precondition"}),
            reply(403, {"error": "slow_down", "error_description": "Forbidden"}),
        )

        assert client.poll_device_token(DEVICE, now=NOW) is PollState.PENDING
        assert client.poll_device_token(DEVICE, now=NOW) is PollState.SLOW_DOWN

    @pytest.mark.parametrize(
        ("answer", "error"),
        [
            (aad("interaction_required", 50076), SessionRejected),
            (aad("invalid_grant", 50173), SessionRejected),
            (aad("temporarily_unavailable", None), TransientError),
        ],
    )
    def test_refresh_outcomes(self, answer: httpx.Response, error: type[Exception]) -> None:
        with pytest.raises(error):
            answering(answer).refresh("rt-0", now=NOW)


class TestRedeemedGrant:
    def test_a_usable_pair_is_kept_whatever_else_is_wrong(self) -> None:
        """The code is spent by this 200: a lifetime that cannot be read costs the default."""
        tokens = answering(
            reply(200, {**PAIR, "expires_in": "soon", "scope": ["a"]})
        ).poll_device_token(DEVICE, now=NOW)

        assert isinstance(tokens, TokenSet)
        assert (tokens.access_token, tokens.refresh_token) == ("at-1", "rt-1")
        assert tokens.expires_in == 3600

    def test_string_expires_in_at_login(self) -> None:
        tokens = answering(reply(200, {**PAIR, "expires_in": "3599"})).poll_device_token(
            DEVICE, now=NOW
        )

        assert isinstance(tokens, TokenSet)
        assert tokens.expires_at == NOW + 3599

    def test_string_expires_in_at_refresh(self) -> None:
        """Before: 75 on every refresh, with a wrong "expires_in=0 is outside" clause."""
        tokens = answering(reply(200, {**PAIR, "expires_in": "3599"})).refresh("rt-0", now=NOW)

        assert tokens.expires_in == 3599

    def test_unusable_200_ends_the_poll_and_never_polls_again(self) -> None:
        """No refresh token in the 200: say so, and do not poll with the spent code."""
        seen: list[httpx.Request] = []
        client = answering(
            reply(400, {"error": "authorization_pending"}),
            reply(200, {"access_token": "at-1", "token_type": "Bearer", "expires_in": 60}),
            reply(400, {"error": "invalid_grant"}),
            seen=seen,
        )
        clock = iter(range(NOW, NOW + 10_000, 1))
        with pytest.raises(LoginFailed) as caught:
            wait_for_approval(
                client,
                DEVICE,
                clock=lambda: float(next(clock)),
                sleep=lambda _: None,
                out=io.StringIO(),
                tty=False,
            )

        assert len(seen) == 2
        message = str(caught.value)
        assert "could not be used" in message
        assert "refresh_token is missing" in message
        assert "new login is needed" in message
        assert caught.value.exit_code == EXIT_FAILURE

    def test_a_non_json_200_ends_the_poll_too(self) -> None:
        seen: list[httpx.Request] = []
        client = answering(httpx.Response(200, text="OK"), seen=seen)
        with pytest.raises(LoginFailed, match="not JSON"):
            client.poll_device_token(DEVICE, now=NOW)

    def test_an_unusable_refresh_answer_is_1_and_says_what_it_costs(self) -> None:
        with pytest.raises(ProviderIncompatible) as caught:
            answering(reply(200, {"token_type": "Bearer", "expires_in": 60})).refresh(
                "rt-0", now=NOW
            )

        assert caught.value.exit_code == EXIT_FAILURE
        assert "access_token is missing" in str(caught.value)
        assert "rotated" in str(caught.value)

    def test_a_token_answer_from_elsewhere_is_78(self) -> None:
        with pytest.raises(WrongEndpoint, match="token_url"):
            answering(reply(200, {"keys": []})).refresh("rt-0", now=NOW)


class TestGoogleRefreshToken:
    def test_no_offline_access_hint_for_google(self) -> None:
        """Google has no offline_access scope: the hint names access_type instead."""
        client = answering(
            reply(200, {"access_token": "ya29.x", "token_type": "Bearer", "expires_in": 3599}),
            preset="google",
            scopes=("https://mail.google.com/",),
        )
        with pytest.raises(LoginFailed) as caught:
            client.exchange_code("c", verifier="v", redirect_uri="http://127.0.0.1:1/", now=NOW)

        assert "offline_access" not in str(caught.value)
        assert 'access_type = "offline"' in str(caught.value)

    def test_authorization_params_are_sent(self) -> None:
        client = answering(
            reply(500, {}),
            authorization_params=(("access_type", "offline"), ("prompt", "consent")),
        )
        url = client.authorization_request("http://127.0.0.1:9/callback", "st", "ch")

        assert "access_type=offline" in url
        assert "prompt=consent" in url


class TestErrorsWithStatus200:
    """GitHub answers its token endpoint's errors with HTTP 200 and an error field."""

    def test_pending_and_slow_down(self) -> None:
        client = answering(
            reply(200, {"error": "authorization_pending", "error_description": "pending"}),
            reply(200, {"error": "slow_down", "interval": 10}),
        )

        assert client.poll_device_token(DEVICE, now=NOW) is PollState.PENDING
        assert client.poll_device_token(DEVICE, now=NOW) is PollState.SLOW_DOWN

    def test_a_bad_refresh_token_needs_login(self) -> None:
        with pytest.raises(SessionRejected, match="invalid_grant"):
            answering(reply(200, {"error": "bad_refresh_token"})).refresh("rt-0", now=NOW)

    def test_an_unknown_error_is_a_refusal_naming_it(self) -> None:
        with pytest.raises(ProviderRefused, match=r"HTTP 200 \(device_flow_disabled\)"):
            answering(reply(200, {"error": "device_flow_disabled"})).poll_device_token(
                DEVICE, now=NOW
            )

    def test_a_device_code_error_with_200_is_not_the_wrong_endpoint(self) -> None:
        with pytest.raises(ProviderRefused, match=r"HTTP 200 \(device_flow_disabled\)") as caught:
            answering(reply(200, {"error": "device_flow_disabled"})).request_device_code(now=NOW)

        assert not isinstance(caught.value, WrongEndpoint)
