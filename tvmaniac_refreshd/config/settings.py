"""The TOML configuration: parsed into frozen dataclasses, with every problem reported at once.

``parse_config`` is pure (text in, ``Config`` out); ``load_config`` adds the file system.
"""

from __future__ import annotations

import hashlib
import re
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args

from tvmaniac_refreshd.config import presets, values
from tvmaniac_refreshd.config.variants import (
    PROVIDERS,
    VARIANTS,
    OAuth2Settings,
    ProviderName,
    ProviderSettings,
    TraktSettings,
    canonical_url,
)
from tvmaniac_refreshd.core.errors import ConfigError, UsageError
from tvmaniac_refreshd.core.policy import RefreshPolicy, RetryPolicy

ACCOUNT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
# Where tokens live: the OS keyring (the default, never changed silently) or private files.
StoreBackend = Literal["keyring", "file"]
STORE_BACKENDS: tuple[StoreBackend, ...] = get_args(StoreBackend)
# Encryption at rest of the file store: none (permissions only) or systemd-creds (systemd 256+).
Encryption = Literal["none", "systemd-creds"]
STORE_ENCRYPTION: tuple[Encryption, ...] = get_args(Encryption)

__all__ = [
    "PROVIDERS",
    "STORE_BACKENDS",
    "STORE_ENCRYPTION",
    "Account",
    "Config",
    "Encryption",
    "OAuth2Settings",
    "ProviderName",
    "ProviderSettings",
    "StoreBackend",
    "TraktSettings",
    "canonical_url",
    "load_config",
    "parse_config",
    "settings_of",
]


@dataclass(frozen=True)
class HttpSettings:
    """Timeouts for each request to the provider, in seconds."""

    connect_timeout: float = 5.0
    read_timeout: float = 20.0


@dataclass(frozen=True)
class StoreSettings:
    """Which store holds the tokens, and how it and the per-account lock are used."""

    backend: StoreBackend = "keyring"  # or "file": one 0600 file per account, for headless
    encrypt: Encryption = "none"  # file store only: "systemd-creds" encrypts each file

    timeout: float = 10.0  # a locked collection can otherwise block a keyring call forever
    lock_timeout: float = 60.0  # how long a command waits for another process's refresh
    allow_insecure_backend: bool = False  # plaintext or "fail" keyring backends


@dataclass(frozen=True)
class Alerts:
    """How the user is told that an account needs them."""

    desktop: bool = True  # notify-send (Linux) or osascript (macOS), where available
    remind_every: int = 86400  # repeat a standing alert at most this often
    failing_for: int = 6 * 3600  # alert when refreshes have failed for this long
    hook_timeout: int = 30  # a hook still running after this is killed
    on_refreshed: tuple[str, ...] = ()  # argv of a command run after each refresh
    on_reauth_required: tuple[str, ...] = ()  # argv run when `login` is needed
    on_error: tuple[str, ...] = ()  # argv run when refreshes keep failing


@dataclass(frozen=True)
class DaemonSettings:
    """The long-running daemon's own rhythm (global only)."""

    check_interval: int = 5 * 3600  # re-read every account this often (tv-maniac's 5 hours)
    tick: int = 900  # compare wall and monotonic clocks this often, to notice suspend
    max_concurrency: int = 4  # refreshes in flight at once, across accounts


@dataclass(frozen=True)
class Account:
    """One OAuth session to keep alive: its client, its provider's settings, its policies.

    If you add a setting that changes where tokens are sent, bind it in the variant's
    ``bound_beyond_endpoint`` (config/variants.py).
    """

    name: str
    client_id: str
    settings: ProviderSettings = TraktSettings()
    client_secret: str | None = field(default=None, repr=False)
    refresh: RefreshPolicy = RefreshPolicy()
    retry: RetryPolicy = RetryPolicy()
    alerts: Alerts = Alerts()

    @property
    def provider(self) -> ProviderName:
        """The config's ``provider = ...``: which variant ``settings`` is."""
        return self.settings.name

    @property
    def endpoint(self) -> str:
        """Return the URL a stored token is bound to: where it was issued and is refreshed."""
        return self.settings.endpoint

    def fingerprint(self) -> str:
        """Return a digest of the settings a stored token is bound to.

        A token is only ever sent back to the provider and client it came from: if the config
        now points elsewhere, the stored token is not used.
        """
        parts = [self.provider, canonical_url(self.endpoint), self.client_id]
        parts.extend(self.settings.bound_beyond_endpoint())
        material = "\n".join(parts)
        return "sha256:" + hashlib.sha256(material.encode()).hexdigest()[:32]

    def needs_client_secret(self) -> bool:
        """Return whether logging in and refreshing need a client secret."""
        return self.settings.needs_client_secret()

    @property
    def redirect_port(self) -> int:
        """The loopback redirect's port for a browser login; 0 picks a free one."""
        return self.settings.redirect_port

    def git_username_for(self, host: str) -> str | None:
        """The user name git gets with this account's token for ``host``; None: not ours."""
        return self.settings.git_username_for(host)


@dataclass(frozen=True)
class Config:
    """The whole configuration of one installation."""

    source: str
    accounts: Mapping[str, Account]
    http: HttpSettings = HttpSettings()
    store: StoreSettings = StoreSettings()
    daemon: DaemonSettings = DaemonSettings()
    warnings: tuple[str, ...] = ()
    default_account: str | None = None  # the top-level key: the account when none is named

    def select(self, name: str | None) -> Account:
        """Return the account named ``name`` (--account, else $TVMANIAC_REFRESHD_ACCOUNT).

        Without a name: the config's ``default_account``, else the only account, else the one
        named ``default``.

        Raises:
            UsageError: if there is no account of that name, or several and none is chosen.
        """
        known = ", ".join(sorted(self.accounts)) or "none"
        if name is None:
            name = self.default_account
        if name is None:
            if len(self.accounts) == 1:
                name = next(iter(self.accounts))
            elif "default" in self.accounts:
                name = "default"
            else:
                raise UsageError(f"several accounts: pass --account NAME ({known})")
        if name not in self.accounts:
            raise UsageError(f"no account named {name!r} in {self.source} (configured: {known})")
        return self.accounts[name]


# One converter per key of each section; a section's table may only hold these keys.
SECTIONS: dict[str, dict[str, values.Converter[object]]] = {
    "refresh": {"threshold": values.fraction, "margin": values.duration, "jitter": values.duration},
    "retry": {"initial": values.positive_duration, "maximum": values.positive_duration},
    "alerts": {
        "desktop": values.boolean,
        "remind_every": values.positive_duration,
        "failing_for": values.positive_duration,
        "hook_timeout": values.positive_duration,
        "on_refreshed": values.argv,
        "on_reauth_required": values.argv,
        "on_error": values.argv,
    },
    "http": {"connect_timeout": values.seconds, "read_timeout": values.seconds},
    "store": {
        "backend": values.choice(STORE_BACKENDS),
        "encrypt": values.choice(STORE_ENCRYPTION),
        "timeout": values.seconds,
        "lock_timeout": values.seconds,
        "allow_insecure_backend": values.boolean,
    },
    "daemon": {
        "check_interval": values.positive_duration,
        "tick": values.positive_duration,
        "max_concurrency": values.count,
    },
}
ACCOUNT_SECTIONS = ("refresh", "retry", "alerts")  # global defaults an account may override


def _section(
    document: Mapping[str, Any], name: str, prefix: str, base: values.T, problems: values.Problems
) -> values.T:
    """Return ``base`` with the keys of ``document[name]`` applied, each converted."""
    table = values.table(document.get(name), f"{prefix}{name}", problems)
    converters = SECTIONS[name]
    problems.unknown_keys(table, set(converters), f"{prefix}{name}.")
    changes = {}
    for key, convert in converters.items():
        if key in table:
            try:
                changes[key] = convert(table[key])
            except (TypeError, ValueError) as exc:
                problems.add(f"{prefix}{name}.{key}", str(exc))
    return replace(base, **changes)  # type: ignore[type-var]


OAUTH2_KEYS = OAuth2Settings.keys
TRAKT_KEYS = TraktSettings.keys
_ACCOUNT_KEYS = {
    "provider",
    "client_id",
    "client_secret",
    *ACCOUNT_SECTIONS,
    *(key for variant in VARIANTS.values() for key in variant.keys),
}


def _account(
    name: str, table: Mapping[str, Any], defaults: Account, problems: values.Problems
) -> Account | None:
    prefix = f"accounts.{name}."
    problems.unknown_keys(table, _ACCOUNT_KEYS, prefix)
    before = len(problems.items)
    table = presets.apply_preset(table, prefix, problems)  # its keys, where unset
    if not ACCOUNT_NAME.fullmatch(name):
        problems.add(f"accounts.{name}", "account names use letters, digits, '_', '.' and '-'")
    provider = values.get(table, "provider", prefix, values.text, "", problems)
    variant = next((v for v in VARIANTS.values() if v.name == provider), None)
    if "provider" not in table:
        problems.add(f"{prefix}provider", f"missing; set it to one of: {', '.join(PROVIDERS)}")
    elif provider and variant is None:
        problems.add(f"{prefix}provider", f"{provider!r} is not one of: {', '.join(PROVIDERS)}")
    client_id = values.get(table, "client_id", prefix, values.text, "", problems)
    if "client_id" not in table:
        where = (variant or TraktSettings).client_id_source
        problems.add(f"{prefix}client_id", f"missing; copy it from {where}")
    client_secret = values.get(table, "client_secret", prefix, values.text, None, problems)
    refresh = _section(table, "refresh", prefix, defaults.refresh, problems)
    retry = _section(table, "retry", prefix, defaults.retry, problems)
    alerts = _section(table, "alerts", prefix, defaults.alerts, problems)
    if variant is None:
        return None
    settings = variant.parse(table, prefix, problems)
    # Keys of one provider kind are mistakes in the other: say so instead of ignoring them.
    for other in VARIANTS.values():
        for key in sorted((other.keys - variant.keys) & set(table)):
            problems.add(f"{prefix}{key}", f'only used with provider = "{other.name}"')
    account = Account(
        name=name,
        client_id=client_id,
        settings=settings,
        client_secret=client_secret,
        refresh=refresh,
        retry=retry,
        alerts=alerts,
    )
    if isinstance(settings, OAuth2Settings):
        for key, explanation in presets.wrong_combinations(settings):
            problems.add(f"{prefix}{key}", explanation)
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
    problems = values.Problems()
    problems.unknown_keys(document, {"accounts", "default_account", *SECTIONS}, "")
    # Global defaults live on a template account; each account starts from them.
    template = Account(
        name="",
        client_id="",
        refresh=_section(document, "refresh", "", RefreshPolicy(), problems),
        retry=_section(document, "retry", "", RetryPolicy(), problems),
        alerts=_section(document, "alerts", "", Alerts(), problems),
    )
    http = _section(document, "http", "", HttpSettings(), problems)
    store = _section(document, "store", "", StoreSettings(), problems)
    daemon = _section(document, "daemon", "", DaemonSettings(), problems)
    if store.encrypt != "none" and store.backend != "file":
        problems.add("store.encrypt", 'encrypts the file store: set backend = "file" too')

    accounts: dict[str, Account] = {}
    accounts_table = values.table(document.get("accounts"), "accounts", problems)
    if not accounts_table:
        problems.add("accounts", "no account configured; add an [accounts.default] table")
    for name, value in accounts_table.items():
        if not isinstance(value, dict):
            problems.add(f"accounts.{name}", "expected a table")
            continue
        account = _account(name, value, template, problems)
        if account is not None:
            accounts[name] = account
    default_account = values.get(document, "default_account", "", values.text, None, problems)
    if default_account is not None and default_account not in accounts_table:
        known = ", ".join(sorted(accounts_table)) or "none"
        problems.add("default_account", f"no account named {default_account!r} ({known})")
    if problems.items:
        raise ConfigError(source, problems.items)
    return Config(
        source=source,
        accounts=accounts,
        http=http,
        store=store,
        daemon=daemon,
        default_account=default_account,
    )


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
                "the file does not exist; create it with `tvmaniac-refreshd config init`, "
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
    return replace(config, warnings=tuple(warnings))


Variant = TypeVar("Variant", TraktSettings, OAuth2Settings)


def settings_of(account: Account, variant: type[Variant]) -> Variant:
    """Return ``account``'s provider settings as ``variant``, which a dialect requires.

    Raises:
        TypeError: the account is of another provider (a bug: the factory picks by variant).
    """
    settings = account.settings
    if not isinstance(settings, variant):
        raise TypeError(f"account {account.name!r} is a {account.provider} account")
    return settings
