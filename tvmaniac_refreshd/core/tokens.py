"""Token sets: strict parsing of token responses, and the versioned keyring document.

Pure code: no I/O, time passed in. Nothing here ever puts a token into an exception message.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field, replace
from typing import Any

from tvmaniac_refreshd.core.errors import StoreCorrupt
from tvmaniac_refreshd.core.locations import APP
from tvmaniac_refreshd.core.token_form import is_token_text

DOCUMENT_FORMAT = f"{APP}/tokens"
DOCUMENT_VERSION = 1
# Lifetimes outside this range are a broken or hostile response, not a policy to follow.
MIN_LIFETIME = 1  # a test server may issue one-second tokens; zero or less is broken
MAX_LIFETIME = 400 * 86400
# What a value short and plain enough to quote back in an error message is made of.
_WORD_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 ._:+-")


class ResponseInvalid(ValueError):
    """A token response that cannot be trusted; the message names fields, never values."""


@dataclass(frozen=True)
class TokenSet:
    """An access token with what is needed to refresh it and to know when to."""

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    created_at: int  # as the server said, unix seconds
    expires_in: int  # seconds, as the server said
    expires_at: int  # when we treat it as expired; never later than the server could
    token_type: str = "bearer"
    scope: str = ""


@dataclass(frozen=True)
class TokenDocument:
    """What one keyring item holds for one account."""

    account: str
    provider: str
    tokens: TokenSet
    fingerprint: str
    obtained_at: int
    # What the fingerprint digests, in the clear (neither is a secret), so that a login bound
    # to another client or server can be named; empty in items written before they were kept.
    client_id: str = ""
    endpoint: str = ""


def describe(value: object) -> str:
    """Say what a provider sent in a field, for an error message: a short number, word or type.

    Never the text of a long string, which could be a token in the wrong field.
    """
    if value is None:
        return "null"
    if isinstance(value, bool | int | float):
        return json.dumps(value)
    if isinstance(value, str):
        if len(value) <= 16 and set(value) <= _WORD_CHARS:
            return json.dumps(value)
        return f"a string of {len(value)} characters"
    return f"a JSON {'array' if isinstance(value, list) else 'object'}"


def _token(body: dict[str, Any], key: str, problems: list[str]) -> str:
    value = body.get(key)
    if key not in body:
        problems.append(f"{key} is missing")
        return ""
    if not isinstance(value, str) or not value:
        problems.append(f"{key} is missing or not a string (got {describe(value)})")
        return ""
    if not is_token_text(value):
        problems.append(f"{key} has an invalid form")
        return ""
    return value


def number(value: object) -> int | None:
    """Return ``value`` as an integer: a JSON number, or a string of digits.

    Azure AD v1 and AD FS send ``expires_in`` (and ``ext_expires_in``) as a string, "3599"
    (learn.microsoft.com, "AD FS OpenID Connect/OAuth flows and application scenarios": the
    token response examples); MSAL reads it with ``int()``, and so do we.
    """
    if isinstance(value, str) and 0 < len(value) <= 12 and value.isascii() and value.isdigit():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


def _integer(body: dict[str, Any], key: str, problems: list[str]) -> int | None:
    value = number(body.get(key))
    if value is None:
        problems.append(f"{key} is missing or not an integer (got {describe(body.get(key))})")
    return value


@dataclass(frozen=True)
class _Reading:
    """A token response read field by field: what could be used, and what could not."""

    tokens: TokenSet
    problems: list[str]  # every field that is wrong, named with what was received
    usable: bool  # an access token and a refresh token are there: the grant can be kept


def _read(
    body: object,
    *,
    now: float,
    generic: bool,
    previous_refresh: str | None,
    default_lifetime: int,
) -> _Reading:
    if not isinstance(body, dict):
        raise ResponseInvalid(f"the token response is {describe(body)}, not a JSON object")
    problems: list[str] = []
    access = _token(body, "access_token", problems)
    if generic and previous_refresh and "refresh_token" not in body:
        refresh = previous_refresh
    else:
        refresh = _token(body, "refresh_token", problems)
    usable = bool(access and refresh)
    expires_in: int | None = default_lifetime
    if not generic or "expires_in" in body:
        expires_in = _integer(body, "expires_in", problems)
        if expires_in is not None and not MIN_LIFETIME <= expires_in <= MAX_LIFETIME:
            problems.append(
                f"expires_in={expires_in} is outside {MIN_LIFETIME}..{MAX_LIFETIME} seconds"
            )
            expires_in = None
    created_at: int | None = int(now)
    if not generic or "created_at" in body:
        created_at = _integer(body, "created_at", problems)
        if created_at is not None and created_at < 0:
            problems.append("created_at is negative")
            created_at = None
    token_type = body.get("token_type")
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        problems.append(f"token_type is {describe(token_type)}, not bearer")
        token_type = "bearer"
    scope = body.get("scope", "")
    if not isinstance(scope, str):
        problems.append(f"scope is {describe(scope)}, not a string")
        scope = ""
    created = int(now) if created_at is None else created_at
    lifetime = default_lifetime if expires_in is None else expires_in
    tokens = TokenSet(
        access_token=access,
        refresh_token=refresh,
        created_at=created,
        expires_in=lifetime,
        expires_at=min(created, int(now)) + lifetime,
        token_type=token_type.lower(),
        scope=scope,
    )
    return _Reading(tokens, problems, usable)


def parse_token_response(
    body: object,
    *,
    now: float,
    generic: bool = False,
    previous_refresh: str | None = None,
    default_lifetime: int = 3600,
) -> TokenSet:
    """Given the decoded JSON of a successful token response, return its ``TokenSet``.

    ``now`` is when the response arrived. The expiry is counted from the earlier of the server's
    ``created_at`` and ``now``: a server clock ahead of ours must not push a refresh past expiry.

    Trakt always sends every field, so all are required. A ``generic`` OAuth2 server (RFC 6749)
    may omit ``created_at`` (arrival time is used), ``expires_in`` (``default_lifetime``), and on
    a refresh the ``refresh_token`` (``previous_refresh`` stays valid). Numbers may come as
    strings of digits (see ``number``).

    Raises:
        ResponseInvalid: naming every missing, mistyped or absurd field.
    """
    reading = _read(
        body,
        now=now,
        generic=generic,
        previous_refresh=previous_refresh,
        default_lifetime=default_lifetime,
    )
    if reading.problems:
        raise ResponseInvalid("; ".join(reading.problems))
    return reading.tokens


def salvage_token_response(
    body: object,
    *,
    now: float,
    generic: bool = False,
    previous_refresh: str | None = None,
    default_lifetime: int = 3600,
) -> tuple[TokenSet, list[str]]:
    """Return the tokens of a 200 answer that spent a grant, if they can be used at all.

    A device code, an authorization code or a rotated refresh token is gone once the server
    answered 200: its answer is the only copy of the grant. An access token and a refresh token
    are enough to keep it; a lifetime that cannot be read becomes ``default_lifetime`` and a
    wrong ``token_type`` or ``scope`` is noted. The second value lists what was wrong.

    Raises:
        ResponseInvalid: without a usable access token and refresh token, naming every problem.
    """
    reading = _read(
        body,
        now=now,
        generic=generic,
        previous_refresh=previous_refresh,
        default_lifetime=default_lifetime,
    )
    if not reading.usable:
        raise ResponseInvalid("; ".join(reading.problems))
    return reading.tokens, reading.problems


def encode_document(document: TokenDocument) -> str:
    """Return the JSON text stored in the keyring for ``document``."""
    tokens = document.tokens
    made_for = {
        key: value
        for key, value in (("client_id", document.client_id), ("endpoint", document.endpoint))
        if value
    }
    return json.dumps(
        {
            "format": DOCUMENT_FORMAT,
            "version": DOCUMENT_VERSION,
            "account": document.account,
            "provider": document.provider,
            "fingerprint": document.fingerprint,
            "obtained_at": document.obtained_at,
            "access_token": tokens.access_token,
            "refresh_token": tokens.refresh_token,
            "token_type": tokens.token_type,
            "scope": tokens.scope,
            "created_at": tokens.created_at,
            "expires_in": tokens.expires_in,
            "expires_at": tokens.expires_at,
            **made_for,
        },
        separators=(",", ":"),
    )


def _inspect_command() -> str:
    if sys.platform == "darwin":
        return "`security find-generic-password -s tvmaniac-refreshd -w`"
    return "`secret-tool search service tvmaniac-refreshd`"


def _stored_integer(data: dict[str, Any], key: str, problems: list[str]) -> int:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        problems.append(f"{key} is missing or not an integer")
        return 0
    return value


def decode_document(text: str, account: str) -> TokenDocument:
    """Return the ``TokenDocument`` in a keyring item's ``text``.

    Raises:
        StoreCorrupt: if the item is not JSON, not ours, from a newer version, or incomplete.
    """
    where = f"the keyring item for account {account!r}"
    try:
        data = json.loads(text)
    except ValueError:
        raise StoreCorrupt(
            f"{where} is not JSON written by tvmaniac-refreshd; it was left untouched. "
            f"Inspect it with {_inspect_command()}, then run "
            "`tvmaniac-refreshd logout` to remove it and `login` again",
            account=account,
        ) from None
    if not isinstance(data, dict) or data.get("format") != DOCUMENT_FORMAT:
        raise StoreCorrupt(
            f"{where} was written by another program; it was left untouched. Run "
            "`tvmaniac-refreshd logout` to remove it and `login` again",
            account=account,
        )
    version = data.get("version")
    if version != DOCUMENT_VERSION:
        raise StoreCorrupt(
            f"{where} has format version {version!r}, this program reads version "
            f"{DOCUMENT_VERSION}; upgrade tvmaniac-refreshd",
            account=account,
        )
    problems: list[str] = []
    access = _token(data, "access_token", problems)
    refresh = _token(data, "refresh_token", problems)
    numbers = {
        key: _stored_integer(data, key, problems)
        for key in ("created_at", "expires_in", "expires_at", "obtained_at")
    }
    texts = {}
    for key in ("provider", "fingerprint", "token_type", "scope"):
        value = data.get(key)
        if not isinstance(value, str):
            problems.append(f"{key} is missing or not a string")
        texts[key] = value if isinstance(value, str) else ""
    if problems:
        raise StoreCorrupt(
            f"{where} is damaged ({'; '.join(problems)}); it was left untouched. Run "
            "`tvmaniac-refreshd logout` to remove it and `login` again",
            account=account,
        )
    tokens = TokenSet(
        access_token=access,
        refresh_token=refresh,
        created_at=numbers["created_at"],
        expires_in=numbers["expires_in"],
        expires_at=numbers["expires_at"],
        token_type=texts["token_type"],
        scope=texts["scope"],
    )
    return TokenDocument(
        account=account,
        provider=texts["provider"],
        tokens=tokens,
        fingerprint=texts["fingerprint"],
        obtained_at=numbers["obtained_at"],
        client_id=_optional_text(data, "client_id"),
        endpoint=_optional_text(data, "endpoint"),
    )


def _optional_text(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    return value if isinstance(value, str) else ""


def with_tokens(document: TokenDocument, tokens: TokenSet, *, now: float) -> TokenDocument:
    """Return ``document`` holding the new ``tokens``, obtained at ``now``."""
    return replace(document, tokens=tokens, obtained_at=int(now))
