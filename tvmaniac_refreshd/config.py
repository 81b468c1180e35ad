"""The TOML configuration: parsed into frozen dataclasses, with every problem reported at once.

``parse_config`` is pure (text in, ``Config`` out); ``load_config`` adds the file system.
"""

from __future__ import annotations

import hashlib
import re
import stat
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from tvmaniac_refreshd.durations import parse_duration
from tvmaniac_refreshd.errors import ConfigError

ACCOUNT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
PROVIDERS = ("trakt",)
# The only hosts allowed over plain http: a local emulator or test server, never the internet.
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
# Keys people reach for from other tools, with the name we use.
T = TypeVar("T")

RENAMED_KEYS = {
    "token_url": "auth_url",
    "token_uri": "auth_url",
    "base_url": "api_url",
    "secret": "client_secret",
    "client_key": "client_id",
    "api_key": "client_id",
}


@dataclass(frozen=True)
class RefreshPolicy:
    """When a token is due. Durations are seconds; see policy.py for how they combine."""

    threshold: float = 0.25  # refresh once less than this share of the lifetime remains (tv-maniac)
    margin: int = 3600  # never later than this before expiry; capped to half the lifetime
    jitter: int = 600  # spread refreshes of many machines; capped to 5 % of the lifetime


@dataclass(frozen=True)
class HttpSettings:
    """Timeouts for each request to the provider, in seconds."""

    connect_timeout: float = 5.0
    read_timeout: float = 20.0


@dataclass(frozen=True)
class StoreSettings:
    """How the keyring and the per-account lock are used."""

    timeout: float = 10.0  # a locked collection can otherwise block a keyring call forever
    lock_timeout: float = 60.0  # how long a command waits for another process's refresh
    allow_insecure_backend: bool = False  # plaintext or "fail" keyring backends


@dataclass(frozen=True)
class Account:
    """One OAuth session to keep alive.

    If you add a field that changes where tokens are sent, update ``fingerprint()``.
    """

    name: str
    provider: str
    client_id: str
    client_secret: str | None = field(default=None, repr=False)
    auth_url: str = "https://auth.trakt.tv"
    api_url: str = "https://api.trakt.tv"
    redirect_uri: str = "urn:ietf:wg:oauth:2.0:oob"
    refresh: RefreshPolicy = RefreshPolicy()

    def fingerprint(self) -> str:
        """Return a digest of the settings a stored token is bound to.

        A token is only ever sent back to the provider and client it came from: if the config
        now points elsewhere, the stored token is not used.
        """
        material = "\n".join((self.provider, self.auth_url.rstrip("/"), self.client_id))
        return "sha256:" + hashlib.sha256(material.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Config:
    """The whole configuration of one installation."""

    source: str
    accounts: Mapping[str, Account]
    http: HttpSettings = HttpSettings()
    store: StoreSettings = StoreSettings()
    warnings: tuple[str, ...] = ()

    def select(self, name: str | None) -> Account:
        """Return the account named ``name``, else the only one, else ``default``.

        Raises:
            ConfigError: if there is no such account.
        """
        if name is None:
            name = next(iter(self.accounts)) if len(self.accounts) == 1 else "default"
        if name not in self.accounts:
            known = ", ".join(sorted(self.accounts)) or "none"
            raise ConfigError(self.source, [f"no account named {name!r} (configured: {known})"])
        return self.accounts[name]


class _Problems:
    """Collects problems so that the user sees all of them in one run."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, key: str, message: str) -> None:
        self.items.append(f"{key}: {message}")

    def unknown_keys(self, table: Mapping[str, Any], allowed: set[str], prefix: str) -> None:
        for key in sorted(set(table) - allowed):
            hint = f" (did you mean {RENAMED_KEYS[key]!r}?)" if key in RENAMED_KEYS else ""
            known = ", ".join(sorted(allowed))
            self.add(f"{prefix}{key}", f"unknown key{hint}; known keys here: {known}")


def _get(
    table: Mapping[str, Any],
    key: str,
    prefix: str,
    convert: Callable[[Any], T],
    default: T,
    problems: _Problems,
) -> T:
    if key not in table:
        return default
    try:
        return convert(table[key])
    except (TypeError, ValueError) as exc:
        problems.add(f"{prefix}{key}", str(exc))
        return default


def _duration(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, str):
        raise TypeError(f'expected a duration string like "90s", "5h" or "2d", got {value!r}')
    return parse_duration(value)


def _positive_duration(value: object) -> int:
    seconds = _duration(value)
    if seconds <= 0:
        raise ValueError("must be longer than 0s")
    return seconds


def _fraction(value: object) -> float:
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


def _boolean(value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {value!r}")
    return value


def _text(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise TypeError("expected a non-empty string")
    if any(ch in value for ch in "\r\n\0"):
        raise ValueError("must be a single line")
    return value.strip()


def _url(value: object) -> str:
    text = _text(value)
    parts = urlsplit(text)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(f"{text!r} is not an http(s) URL")
    if parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
        raise ValueError("must use https (plain http is only allowed to a loopback address)")
    if parts.query or parts.fragment:
        raise ValueError("must not have a query or fragment")
    return text.rstrip("/")


def _seconds(value: object) -> float:
    return float(_positive_duration(value))


def _table(value: object, key: str, problems: _Problems) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.add(key, "expected a table")
        return {}
    return value


def _refresh_policy(
    table: Mapping[str, Any], prefix: str, base: RefreshPolicy, problems: _Problems
) -> RefreshPolicy:
    problems.unknown_keys(table, {"threshold", "margin", "jitter"}, prefix)
    return RefreshPolicy(
        threshold=_get(table, "threshold", prefix, _fraction, base.threshold, problems),
        margin=_get(table, "margin", prefix, _duration, base.margin, problems),
        jitter=_get(table, "jitter", prefix, _duration, base.jitter, problems),
    )


_ACCOUNT_KEYS = {
    "provider",
    "client_id",
    "client_secret",
    "auth_url",
    "api_url",
    "redirect_uri",
    "refresh",
}


def _account(
    name: str, table: Mapping[str, Any], defaults: RefreshPolicy, problems: _Problems
) -> Account | None:
    prefix = f"accounts.{name}."
    problems.unknown_keys(table, _ACCOUNT_KEYS, prefix)
    before = len(problems.items)
    if not ACCOUNT_NAME.fullmatch(name):
        problems.add(f"accounts.{name}", "account names use letters, digits, '_', '.' and '-'")
    provider = _get(table, "provider", prefix, _text, "", problems)
    if "provider" not in table:
        problems.add(f"{prefix}provider", f"missing; set it to one of: {', '.join(PROVIDERS)}")
    elif provider and provider not in PROVIDERS:
        problems.add(f"{prefix}provider", f"{provider!r} is not one of: {', '.join(PROVIDERS)}")
    client_id = _get(table, "client_id", prefix, _text, "", problems)
    if "client_id" not in table:
        problems.add(f"{prefix}client_id", "missing; copy it from your Trakt app's settings page")
    account = Account(
        name=name,
        provider=provider,
        client_id=client_id,
        client_secret=_get(table, "client_secret", prefix, _text, None, problems),
        auth_url=_get(table, "auth_url", prefix, _url, Account.auth_url, problems),
        api_url=_get(table, "api_url", prefix, _url, Account.api_url, problems),
        redirect_uri=_get(table, "redirect_uri", prefix, _text, Account.redirect_uri, problems),
        refresh=_refresh_policy(
            _table(table.get("refresh"), f"{prefix}refresh", problems),
            f"{prefix}refresh.",
            defaults,
            problems,
        ),
    )
    return account if len(problems.items) == before else None


def parse_config(text: str, source: str = "<config>") -> Config:
    """Given the TOML ``text`` of a config file, return the ``Config``.

    Raises:
        ConfigError: listing every problem, each with its key, if anything is wrong.
    """
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, [f"not valid TOML: {exc}"]) from None
    problems = _Problems()
    problems.unknown_keys(document, {"accounts", "refresh", "http", "store"}, "")

    refresh_defaults = _refresh_policy(
        _table(document.get("refresh"), "refresh", problems), "refresh.", RefreshPolicy(), problems
    )
    http_table = _table(document.get("http"), "http", problems)
    problems.unknown_keys(http_table, {"connect_timeout", "read_timeout"}, "http.")
    http = HttpSettings(
        connect_timeout=_get(
            http_table, "connect_timeout", "http.", _seconds, HttpSettings.connect_timeout, problems
        ),
        read_timeout=_get(
            http_table, "read_timeout", "http.", _seconds, HttpSettings.read_timeout, problems
        ),
    )
    store_table = _table(document.get("store"), "store", problems)
    problems.unknown_keys(
        store_table, {"timeout", "lock_timeout", "allow_insecure_backend"}, "store."
    )
    store = StoreSettings(
        timeout=_get(store_table, "timeout", "store.", _seconds, StoreSettings.timeout, problems),
        lock_timeout=_get(
            store_table, "lock_timeout", "store.", _seconds, StoreSettings.lock_timeout, problems
        ),
        allow_insecure_backend=_get(
            store_table,
            "allow_insecure_backend",
            "store.",
            _boolean,
            StoreSettings.allow_insecure_backend,
            problems,
        ),
    )

    accounts: dict[str, Account] = {}
    accounts_table = _table(document.get("accounts"), "accounts", problems)
    if not accounts_table:
        problems.add("accounts", "no account configured; add an [accounts.default] table")
    for name, value in accounts_table.items():
        table = _table(value, f"accounts.{name}", problems)
        account = _account(name, table, refresh_defaults, problems) if table else None
        if account is not None:
            accounts[name] = account
    if problems.items:
        raise ConfigError(source, problems.items)
    return Config(source=source, accounts=accounts, http=http, store=store)


def load_config(path: Path) -> Config:
    """Read and parse the config file at ``path``.

    Raises:
        ConfigError: if the file is missing, unreadable or invalid.
    """
    try:
        raw = path.read_bytes()
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ConfigError(
            str(path),
            [
                "the file does not exist; create it from config/refreshd.example.toml, "
                "or point --config or $TVMANIAC_REFRESHD_CONFIG at yours"
            ],
        ) from None
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read the file: {exc.strerror}"]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(str(path), ["the file is not UTF-8 text"]) from None
    config = parse_config(text, source=str(path))
    warnings = []
    has_secret = any(account.client_secret for account in config.accounts.values())
    if has_secret and mode & (stat.S_IRWXG | stat.S_IRWXO):
        warnings.append(
            f"{path} holds a client_secret and other users can read it; run: chmod 600 {path}"
        )
    return Config(
        source=config.source,
        accounts=config.accounts,
        http=config.http,
        store=config.store,
        warnings=tuple(warnings),
    )
