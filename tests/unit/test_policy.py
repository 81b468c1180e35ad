"""The refresh policy: when a token is due, for any lifetime from a minute to 90 days."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tvmaniac_refreshd.core.policy import (
    AccountState,
    RefreshPolicy,
    account_state,
    jitter_share,
    needs_refresh,
    refresh_due_at,
)
from tvmaniac_refreshd.core.tokens import TokenSet

NOW = 1_800_000_000
NO_JITTER = RefreshPolicy(jitter=0)


def token(lifetime: int, created_at: int = NOW) -> TokenSet:
    return TokenSet(
        access_token="a" * 64,
        refresh_token="r" * 64,
        created_at=created_at,
        expires_in=lifetime,
        expires_at=created_at + lifetime,
    )


class TestRefreshDueAt:
    @pytest.mark.parametrize(
        ("lifetime", "lead"),
        [
            (604800, 151200),  # Trakt today, 7 days: 42 h before expiry
            (86400, 21600),  # Trakt in 2025, 24 h: 6 h before
            (7776000, 1944000),  # Trakt before 2025, 90 days: 22.5 days before
            (3600, 1800),  # one hour: the 1 h margin is capped to half the lifetime
            (60, 30),  # one minute: once per lifetime, not continuously
        ],
    )
    def test_lead_time_by_lifetime(self, lifetime: int, lead: int) -> None:
        """Without jitter, a token is due 25 % of its lifetime (or the capped margin) early."""
        tokens = token(lifetime)

        assert lead == tokens.expires_at - refresh_due_at(tokens, NO_JITTER, salt="a")

    def test_margin_wins_when_larger_than_threshold(self) -> None:
        """A margin larger than 25 % of the lifetime wins: a 4 h token with 2 h margin."""
        tokens = token(4 * 3600)

        assert refresh_due_at(tokens, RefreshPolicy(margin=7200, jitter=0), salt="a") == (
            tokens.expires_at - 7200
        )

    def test_jitter_is_stable_and_bounded(self) -> None:
        """Every process computes the same due time, at most 5 % of the lifetime early."""
        tokens = token(604800)
        due = refresh_due_at(tokens, RefreshPolicy(), salt="acct")

        assert due == refresh_due_at(tokens, RefreshPolicy(), salt="acct")
        plain = refresh_due_at(tokens, NO_JITTER, salt="acct")
        assert plain - 600 <= due <= plain

    @given(
        lifetime=st.integers(min_value=10, max_value=400 * 86400),
        threshold=st.floats(min_value=0.01, max_value=0.9),
        margin=st.integers(min_value=0, max_value=30 * 86400),
        jitter=st.integers(min_value=0, max_value=30 * 86400),
        salt=st.text(max_size=10),
    )
    def test_due_inside_lifetime(
        self, lifetime: int, threshold: float, margin: int, jitter: int, salt: str
    ) -> None:
        """For any policy, the due time lies within the token's life, at least 1 % before expiry."""
        tokens = token(lifetime)
        due = refresh_due_at(
            tokens, RefreshPolicy(threshold=threshold, margin=margin, jitter=jitter), salt=salt
        )

        assert NOW <= due <= tokens.expires_at - int(0.01 * lifetime)
        # a refresh never happens more often than about once per tenth of the lifetime
        assert due - NOW >= min(0.1 * lifetime, (1 - threshold - 0.05) * lifetime) - 1

    @given(st.text(max_size=20), st.integers(min_value=0, max_value=2**40))
    def test_jitter_share_in_unit_interval(self, salt: str, created_at: int) -> None:
        """The derived jitter share is in [0, 1)."""

        assert 0 <= jitter_share(salt, created_at) < 1


class TestNeedsRefresh:
    def test_due_time_boundary(self) -> None:
        """Not due a second before the due time, due at it."""
        tokens = token(604800)
        due = refresh_due_at(tokens, NO_JITTER, salt="a")

        assert not needs_refresh(tokens, NO_JITTER, now=due - 1, salt="a")
        assert needs_refresh(tokens, NO_JITTER, now=due, salt="a")

    def test_min_valid(self) -> None:
        """--min-valid asks whether that much validity remains, whatever the policy says."""
        tokens = token(604800)

        assert not needs_refresh(tokens, NO_JITTER, now=NOW, salt="a", min_valid=604800)
        assert needs_refresh(tokens, NO_JITTER, now=NOW + 1, salt="a", min_valid=604800)


class TestAccountState:
    @pytest.mark.parametrize(
        ("offset", "reauth", "state"),
        [
            (0, False, AccountState.ACTIVE),
            (500000, False, AccountState.REFRESH_DUE),
            (604800, False, AccountState.EXPIRED),
            (0, True, AccountState.REAUTH_REQUIRED),
        ],
    )
    def test_states(self, offset: int, reauth: bool, state: AccountState) -> None:
        """Each state is reported at the right moment."""

        assert state == account_state(
            token(604800), NO_JITTER, now=NOW + offset, salt="a", reauth_required=reauth
        )

    def test_logged_out(self) -> None:
        """No tokens is logged_out."""

        assert (
            account_state(None, NO_JITTER, now=NOW, salt="a", reauth_required=False)
            == AccountState.LOGGED_OUT
        )
