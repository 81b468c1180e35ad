"""Converters for config values: each turns a TOML value into ours or raises a clear error.

They raise TypeError or ValueError with a message that completes "KEY: ..."; ``Problems``
collects those so that every mistake in a file is reported in one run.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit

from tvmaniac_refreshd.core.durations import parse_duration

T = TypeVar("T")
Choice = TypeVar("Choice", bound=str)
# Turns a TOML value into a T, or raises TypeError/ValueError saying what was expected.
Converter = Callable[[object], T]

# The only hosts allowed over plain http: a local emulator or test server, never the internet.
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
# Keys people reach for from other tools, with the name we use.
RENAMED_KEYS = {
    "token_uri": "token_url",
    "device_url": "device_authorization_url",
    "revoke_url": "revocation_url",
    "scope": "scopes",
    "base_url": "api_url",
    "secret": "client_secret",
    "client_key": "client_id",
    "api_key": "client_id",
}


def _nearest(key: str, allowed: set[str]) -> str | None:
    """The known key a misspelt one was most probably meant to be."""
    import difflib  # noqa: PLC0415  # only when a key is unknown

    found = difflib.get_close_matches(key, sorted(allowed), n=1, cutoff=0.6)
    return found[0] if found else None


class Problems:
    """Collects problems so that the user sees all of them in one run."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, key: str, message: str) -> None:
        self.items.append(f"{key}: {message}")

    def unknown_keys(self, table: Mapping[str, Any], allowed: set[str], prefix: str) -> None:
        for key in sorted(set(table) - allowed):
            meant = RENAMED_KEYS.get(key) or _nearest(key, allowed)
            hint = f" (did you mean {meant!r}?)" if meant else ""
            known = ", ".join(sorted(allowed))
            self.add(f"{prefix}{key}", f"unknown key{hint}; known keys here: {known}")


def get(
    table: Mapping[str, Any],
    key: str,
    prefix: str,
    convert: Callable[[Any], T],
    default: T,
    problems: Problems,
) -> T:
    if key not in table:
        return default
    try:
        return convert(table[key])
    except (TypeError, ValueError) as exc:
        problems.add(f"{prefix}{key}", str(exc))
        return default


def duration(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, str):
        raise TypeError(f'expected a duration string like "90s", "5h" or "2d", got {value!r}')
    return parse_duration(value)


def positive_duration(value: object) -> int:
    seconds = duration(value)
    if seconds <= 0:
        raise ValueError("must be longer than 0s")
    return seconds


def fraction(value: object) -> float:
    """Accept ``"25%"`` or ``0.25``."""
    if isinstance(value, str) and value.strip().endswith("%"):
        number = float(value.strip()[:-1]) / 100
    elif isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    else:
        raise TypeError(f'expected a share such as "25%" or 0.25, got {value!r}')
    if not 0.01 <= number <= 0.9:
        raise ValueError("must be between 1% and 90% of the token lifetime")
    return number


def boolean(value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {value!r}")
    return value


def text(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise TypeError("expected a non-empty string")
    if any(ch in value for ch in "\r\n\0"):
        raise ValueError("must be a single line")
    return value.strip()


def _checked_url(value: object) -> str:
    """Return ``value`` if it is an absolute http(s) URL we may send a client secret to."""
    address = text(value)
    parts = urlsplit(address)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(f"{address!r} is not an http(s) URL")
    if parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
        raise ValueError("must use https (plain http is only allowed to a loopback address)")
    if "#" in address:
        # RFC 6749 §3.1 and §3.2: an endpoint URI MUST NOT include a fragment component.
        raise ValueError("must not have a fragment (#...)")
    if parts.username is not None or parts.password is not None:
        # httpx would send these as Basic credentials in place of the client's own, and error
        # messages name the URL's host part, which holds them.
        raise ValueError("must not hold a user name or password (user@host)")
    return address


def endpoint_url(value: object) -> str:
    """An OAuth2 endpoint (token, device, authorization, revocation): used byte for byte.

    RFC 6749 §3.1 and §3.2: the endpoint URI MAY include a query component, which MUST be
    retained (Azure AD B2C's ``?p=POLICY``); a trailing slash is part of the path (Django and
    Rails servers end their endpoints with one, and answer 404 without it).
    """
    return _checked_url(value)


def base_url(value: object) -> str:
    """A base URL that paths are joined to (Trakt's ``auth_url``): without a trailing slash.

    ``"https://auth.trakt.tv/"`` and ``"https://auth.trakt.tv"`` both become the latter, so
    that ``base + "/oauth/token"`` has exactly one slash either way.
    """
    address = _checked_url(value)
    if "?" in address:
        raise ValueError("must not have a query (?...): paths are appended to it")
    return address.rstrip("/")


def seconds(value: object) -> float:
    return float(positive_duration(value))


def table(value: object, key: str, problems: Problems) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.add(key, "expected a table")
        return {}
    return value


def argv(value: object) -> tuple[str, ...]:
    """Accept a command as a list of strings, or one string split like a shell would."""
    if isinstance(value, str):
        parts = shlex.split(value)
    elif isinstance(value, list) and all(isinstance(part, str) for part in value):
        parts = list(value)
    else:
        raise TypeError('expected a command, e.g. ["notify-me", "--urgent"] or "notify-me"')
    if not parts or not parts[0]:
        raise ValueError("the command is empty")
    return tuple(parts)


def count(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1000:
        raise TypeError(f"expected a whole number from 1 to 1000, got {value!r}")
    return value


def scopes(value: object) -> tuple[str, ...]:
    """Accept a list of scope names, or one space-separated string as OAuth2 sends them."""
    if isinstance(value, str):
        parts = value.split()
    elif isinstance(value, list) and all(isinstance(part, str) for part in value):
        parts = [part.strip() for part in value]
    else:
        raise TypeError('expected scopes, e.g. ["openid", "offline_access"]')
    if not all(parts) or any(" " in part for part in parts):
        raise ValueError("scope names are non-empty and contain no spaces")
    return tuple(parts)


def choice(options: tuple[Choice, ...]) -> Converter[Choice]:
    """Return a converter that accepts exactly one of ``options`` (a Literal's values)."""

    def convert(value: object) -> Choice:
        for option in options:
            if value == option:
                return option
        raise ValueError(f"{value!r} is not one of: {', '.join(options)}")

    return convert


def hosts(value: object) -> tuple[str, ...]:
    """Accept one git host or a list of them: a host name, optionally with ``:port``."""
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise TypeError('expected a host or a list of hosts, e.g. "gitlab.example.com"')
    found = []
    for name in names:
        host = name.strip().lower()
        if not host or any(ch in host for ch in "/@ \t\r\n\0"):
            raise ValueError(f"{name!r} is not a host name (no scheme, path or user)")
        found.append(host)
    return tuple(found)


def port(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
        raise TypeError(f"expected a port number from 0 to 65535, got {value!r}")
    return value


# Set by the authorization request itself (RFC 6749 §4.1.1, RFC 7636 §4.3): never overridden.
FIXED_PARAMETERS = (
    "response_type",
    "client_id",
    "redirect_uri",
    "state",
    "scope",
    "code_challenge",
    "code_challenge_method",
)


def parameters(value: object) -> tuple[tuple[str, str], ...]:
    """Accept a table of extra authorization-request parameters, e.g. Google's access_type."""
    if not isinstance(value, dict) or not all(
        isinstance(key, str) and isinstance(item, str) for key, item in value.items()
    ):
        raise TypeError('expected a table of strings, e.g. { access_type = "offline" }')
    fixed = sorted(set(value) & set(FIXED_PARAMETERS))
    if fixed:
        raise ValueError(f"{', '.join(fixed)} is set by the login itself")
    return tuple(sorted(value.items()))
