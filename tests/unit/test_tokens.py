"""Strict parsing of token responses and of the keyring document."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tvmaniac_refreshd.core.errors import StoreCorrupt
from tvmaniac_refreshd.core.tokens import (
    ResponseInvalid,
    TokenDocument,
    decode_document,
    encode_document,
    parse_token_response,
)

NOW = 1_800_000_000
GOOD = {
    "access_token": "a" * 64,
    "token_type": "bearer",
    "expires_in": 604800,
    "refresh_token": "r" * 64,
    "scope": "public",
    "created_at": NOW,
}


class TestParseTokenResponse:
    def test_trakt_response(self) -> None:
        """Trakt's response gives a token set that expires created_at + expires_in."""
        tokens = parse_token_response(GOOD, now=NOW + 1)

        assert (
            tokens.expires_at,
            tokens.expires_in,
            tokens.scope,
        ) == (NOW + 604800, 604800, "public")
        assert "a" * 64 not in repr(tokens)

    def test_future_created_at_counts_from_arrival(self) -> None:
        """A server clock ahead of ours must not push expiry past the server's own."""
        tokens = parse_token_response({**GOOD, "created_at": NOW + 3600}, now=NOW)

        assert tokens.expires_at == NOW + 604800
        assert tokens.created_at == NOW + 3600

    def test_token_type_case_insensitive(self) -> None:
        """``Bearer`` and ``bearer`` are the same type."""

        assert parse_token_response({**GOOD, "token_type": "Bearer"}, now=NOW).token_type == (
            "bearer"
        )

    @pytest.mark.parametrize(
        ("change", "message"),
        [
            ({"access_token": None}, "access_token is missing"),
            ({"refresh_token": 5}, "refresh_token is missing"),
            (
                {"expires_in": "7 days"},
                'expires_in is missing or not an integer \\(got "7 days"\\)',
            ),
            ({"expires_in": True}, "expires_in is missing or not an integer \\(got true\\)"),
            ({"expires_in": -1}, "outside"),
            ({"expires_in": 0}, "outside"),
            ({"expires_in": 10**12}, "outside"),
            ({"created_at": None}, "created_at is missing"),
            ({"token_type": "mac"}, 'token_type is "mac", not bearer'),
            ({"access_token": "has space"}, "access_token has an invalid form"),
        ],
    )
    def test_rejects_bad_fields(self, change: dict[str, object], message: str) -> None:
        """Each missing, mistyped or absurd field is named, never its value."""
        body = {key: value for key, value in {**GOOD, **change}.items() if value is not None}

        with pytest.raises(ResponseInvalid, match=message) as caught:
            parse_token_response(body, now=NOW)
        assert "r" * 64 not in str(caught.value)

    @given(
        st.dictionaries(
            st.sampled_from(sorted(GOOD)),
            st.none() | st.booleans() | st.integers() | st.text(max_size=70) | st.floats(),
        )
        | st.lists(st.integers())
        | st.text()
    )
    def test_any_body_gives_tokens_or_response_invalid(self, body: object) -> None:
        """No decoded body raises anything but ResponseInvalid."""
        try:
            tokens = parse_token_response(body, now=NOW)
        except ResponseInvalid:
            return
        assert tokens.expires_at <= NOW + tokens.expires_in


class TestDocument:
    def document(self) -> TokenDocument:
        return TokenDocument(
            account="default",
            provider="trakt",
            tokens=parse_token_response(GOOD, now=NOW),
            fingerprint="sha256:x",
            obtained_at=NOW,
        )

    def test_round_trip(self) -> None:
        """A document survives encoding and decoding unchanged."""
        document = self.document()

        assert document == decode_document(encode_document(document), "default")

    def test_fits_windows_credential_limit(self) -> None:
        """The item stays under 2000 bytes of UTF-16, so every keyring can hold it (R23)."""

        assert len(encode_document(self.document()).encode("utf-16-le")) < 2000

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("not json", "is not JSON"),
            ('{"token": "x"}', "another program"),
            ('"just a string"', "another program"),
            (json.dumps({"format": "tvmaniac-refreshd/tokens", "version": 2}), "version 2"),
            (json.dumps({"format": "tvmaniac-refreshd/tokens", "version": 1}), "damaged"),
        ],
    )
    def test_foreign_or_corrupt_items(self, text: str, message: str) -> None:
        """Items we cannot read are reported with what to do, and never quoted."""
        with pytest.raises(StoreCorrupt, match=message) as caught:
            decode_document(text, "default")
        assert "logout" in str(caught.value) or "upgrade" in str(caught.value)

    @given(st.text(max_size=200))
    def test_any_text_decodes_or_store_corrupt(self, text: str) -> None:
        """No keyring content raises anything but StoreCorrupt."""
        with contextlib.suppress(StoreCorrupt):
            decode_document(text, "default")
