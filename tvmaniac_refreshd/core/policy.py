"""When a token is due, and what state an account is in. Pure: ``now`` is always passed in."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum

from tvmaniac_refreshd.core.tokens import TokenSet

# A margin may take at most this share of the lifetime, so that a one-minute token from a
# generic OAuth2 server is refreshed once per lifetime, not continuously.
MAX_MARGIN_SHARE = 0.5
# Jitter spreads refreshes but must never move one by more than a sliver of the lifetime.
MAX_JITTER_SHARE = 0.05


@dataclass(frozen=True)
class RefreshPolicy:
    """When a token is due. Durations are seconds; see below for how they combine."""

    threshold: float = 0.25  # refresh once less than this share of the lifetime remains (tv-maniac)
    margin: int = 3600  # never later than this before expiry; capped to half the lifetime
    jitter: int = 600  # spread refreshes of many machines; capped to 5 % of the lifetime


@dataclass(frozen=True)
class RetryPolicy:
    """How the daemon retries after a transient failure: capped exponential backoff."""

    initial: int = 60  # the first retry; doubled after each further failure
    maximum: int = 900  # the cap: 4 tries an hour while offline, and prompt recovery after


class AccountState(StrEnum):
    """What `status` reports for an account."""

    LOGGED_OUT = "logged_out"  # no tokens stored
    ACTIVE = "active"  # valid, not yet due
    REFRESH_DUE = "refresh_due"  # valid, but inside the refresh window
    EXPIRED = "expired"  # past expiry; a refresh may still revive it
    REAUTH_REQUIRED = "reauth_required"  # the provider rejected the session: `login`


def jitter_share(salt: str, created_at: int) -> float:
    """Return a stable number in [0, 1) for this account and token.

    Derived, not random, so that the daemon, the timer and `status` all agree on the due time.
    """
    digest = hashlib.sha256(f"{salt}:{created_at}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def refresh_due_at(tokens: TokenSet, policy: RefreshPolicy, *, salt: str) -> int:
    """Return the unix time at which ``tokens`` should be refreshed.

    Due once less than ``policy.threshold`` of the lifetime remains, and at least ``margin``
    before expiry (the margin capped to half the lifetime), minus a jitter capped to 5 % of the
    lifetime. Never earlier than issue, never later than expiry.
    """
    lifetime = max(1, tokens.expires_in)
    lead = max(policy.threshold * lifetime, min(float(policy.margin), MAX_MARGIN_SHARE * lifetime))
    jitter = min(float(policy.jitter), MAX_JITTER_SHARE * lifetime)
    jitter *= jitter_share(salt, tokens.created_at)
    issued = tokens.expires_at - lifetime
    return max(issued, int(tokens.expires_at - lead - jitter))


def needs_refresh(
    tokens: TokenSet,
    policy: RefreshPolicy,
    *,
    now: float,
    salt: str,
    min_valid: int | None = None,
) -> bool:
    """Return whether ``tokens`` should be refreshed at ``now``.

    With ``min_valid`` the question is whether less than that many seconds remain; without it,
    whether the policy's due time has come.
    """
    if min_valid is not None:
        return tokens.expires_at - now < min_valid
    return now >= refresh_due_at(tokens, policy, salt=salt)


def account_state(
    tokens: TokenSet | None,
    policy: RefreshPolicy,
    *,
    now: float,
    salt: str,
    reauth_required: bool,
) -> AccountState:
    """Return the state `status` reports for an account."""
    if tokens is None:
        return AccountState.LOGGED_OUT
    if reauth_required:
        return AccountState.REAUTH_REQUIRED
    if now >= tokens.expires_at:
        return AccountState.EXPIRED
    if needs_refresh(tokens, policy, now=now, salt=salt):
        return AccountState.REFRESH_DUE
    return AccountState.ACTIVE


def retry_delay(
    attempt: int, retry: RetryPolicy, *, retry_after: float | None, share: float
) -> float:
    """Return how long to wait before retry number ``attempt`` (1 for the first retry).

    Exponential from ``retry.initial``, capped at ``retry.maximum``, with "equal jitter" (between
    half and all of the step, by ``share`` in [0, 1)) so that many machines coming back online do
    not retry in step. A server's ``Retry-After`` is honoured as a floor.
    """
    step = min(float(retry.maximum), retry.initial * 2.0 ** max(0, attempt - 1))
    delay = step * (0.5 + share / 2)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay
