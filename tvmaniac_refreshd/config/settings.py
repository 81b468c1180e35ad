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
from typing import Any
from urllib.parse import urlsplit

from tvmaniac_refreshd.config import presets, values
from tvmaniac_refreshd.core.errors import ConfigError, UsageError
from tvmaniac_refreshd.core.policy import RefreshPolicy, RetryPolicy

ACCOUNT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
PROVIDERS = ("trakt", "oauth2")
CLIENT_AUTH = ("client_secret_basic", "client_secret_post", "none")
# Where tokens live: the OS keyring (the default, never changed silently) or private files.
STORE_BACKENDS = ("keyring", "file")
# Encryption at rest of the file store: none (permissions only) or systemd-creds (systemd 256+).
STORE_ENCRYPTION = ("none", "systemd-creds")


@dataclass(frozen=True)
class HttpSettings:
    """Timeouts for each request to the provider, in seconds."""

    connect_timeout: float = 5.0
    read_timeout: float = 20.0


@dataclass(frozen=True)
class StoreSettings:
    """Which store holds the tokens, and how it and the per-account lock are used."""

    backend: str = "keyring"  # or "file": one 0600 file per account, for headless machines
    encrypt: str = "none"  # file store only: "systemd-creds" encrypts each file for this user

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
    """One OAuth session to keep alive.

    If you add a field that changes where tokens are sent, update ``fingerprint()``.
    """

    name: str
    provider: str
    client_id: str
    client_secret: str | None = field(default=None, repr=False)
    auth_url: str = "https://auth.trakt.tv"
    # Part of the documented config and checked, but nothing calls Trakt's API yet.
    api_url: str = "https://api.trakt.tv"
    redirect_uri: str = "urn:ietf:wg:oauth:2.0:oob"
    # provider = "oauth2" only: standard endpoints (RFC 6749, 8628, 7009) and client auth.
    token_url: str | None = None
    device_authorization_url: str | None = None
    authorization_url: str | None = None
    revocation_url: str | None = None
    scopes: tuple[str, ...] = ()
    # Extra parameters of the browser login's authorization request (Google's access_type).
    authorization_params: tuple[tuple[str, str], ...] = ()
    preset: str | None = None  # config/presets.py: the settings it filled in, by name
    client_auth: str = "client_secret_basic"
    default_lifetime: int = 3600  # when a token response has no expires_in
    redirect_port: int = 0  # the loopback redirect's port; 0 picks a free one
    git_hosts: tuple[str, ...] = ()  # `git-credential get` answers for these hosts
    git_username: str = "oauth2"  # the user name git sends with the token (GitLab's choice)
    refresh: RefreshPolicy = RefreshPolicy()
    retry: RetryPolicy = RetryPolicy()
    alerts: Alerts = Alerts()

    @property
    def endpoint(self) -> str:
        """Return the URL a stored token is bound to: where it was issued and is refreshed."""
        return (self.token_url if self.provider == "oauth2" else self.auth_url) or ""

    def fingerprint(self) -> str:
        """Return a digest of the settings a stored token is bound to.

        A token is only ever sent back to the provider and client it came from: if the config
        now points elsewhere, the stored token is not used.
        """
        endpoint = self.endpoint
        parts = [self.provider, canonical_url(endpoint), self.client_id]
        # `logout` sends the token to revocation_url: a server of another origin must not get a
        # token issued elsewhere. One of the token endpoint's origin is the same party, and
        # leaving it out keeps the logins made before revocation_url was bound (Trakt's revoke
        # endpoint lives under auth_url, which is bound already).
        revocation = canonical_url(self.revocation_url or "")
        if self.provider == "oauth2" and revocation and _origin(revocation) != _origin(endpoint):
            parts.append(revocation)
        material = "\n".join(parts)
        return "sha256:" + hashlib.sha256(material.encode()).hexdigest()[:32]

    def needs_client_secret(self) -> bool:
        """Return whether logging in and refreshing need a client secret.

        Trakt's device flow sends one with every token request. An oauth2 account with
        ``client_auth = "none"`` is a public client (PKCE) and has none.
        """
        if self.provider == "oauth2":
            return self.client_auth != "none"
        return True


def canonical_url(address: str) -> str:
    """Return the form of an endpoint URL that the fingerprint compares.

    Trailing slashes of the path are dropped, the query is kept, the rest is as written.
    Endpoint URLs used to be stored with their trailing slashes stripped (and a query was
    refused), and fingerprints were made from that form; comparing in it means that using
    endpoints byte for byte invalidated no existing login. ``/token`` and ``/token/`` are one
    endpoint here on purpose; a different query is a different endpoint (B2C's ``?p=``).
    """
    path, mark, query = address.partition("?")
    return path.rstrip("/") + mark + query


def _origin(url: str | None) -> tuple[str, str]:
    """Return the scheme and host:port a URL's requests go to."""
    parts = urlsplit(url or "")
    return parts.scheme.lower(), parts.netloc.lower()


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
Converter = values.Converter
SECTIONS: dict[str, dict[str, Converter]] = {
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


OAUTH2_KEYS = {
    "token_url",
    "device_authorization_url",
    "authorization_url",
    "revocation_url",
    "scopes",
    "authorization_params",
    "client_auth",
    "default_lifetime",
    "redirect_port",
    "git_host",
    "git_username",
}
TRAKT_KEYS = {"auth_url", "api_url", "redirect_uri"}

_ACCOUNT_KEYS = {
    "preset",
    "tenant",
    "provider",
    "client_id",
    "client_secret",
    "auth_url",
    "api_url",
    "redirect_uri",
    *ACCOUNT_SECTIONS,
    *OAUTH2_KEYS,
}


def _account(
    name: str, table: Mapping[str, Any], defaults: Account, problems: values.Problems
) -> Account | None:
    prefix = f"accounts.{name}."
    problems.unknown_keys(table, _ACCOUNT_KEYS, prefix)
    before = len(problems.items)
    table = presets.apply_preset(table, prefix, problems)
    if not ACCOUNT_NAME.fullmatch(name):
        problems.add(f"accounts.{name}", "account names use letters, digits, '_', '.' and '-'")
    provider = values.get(table, "provider", prefix, values.text, "", problems)
    if "provider" not in table:
        problems.add(f"{prefix}provider", f"missing; set it to one of: {', '.join(PROVIDERS)}")
    elif provider and provider not in PROVIDERS:
        problems.add(f"{prefix}provider", f"{provider!r} is not one of: {', '.join(PROVIDERS)}")
    client_id = values.get(table, "client_id", prefix, values.text, "", problems)
    if "client_id" not in table:
        # The one place config names a provider's site: its own check, before any provider exists.
        where = "the app registration" if provider == "oauth2" else "your Trakt app's settings page"
        problems.add(f"{prefix}client_id", f"missing; copy it from {where}")
    account = Account(
        name=name,
        provider=provider,
        client_id=client_id,
        client_secret=values.get(table, "client_secret", prefix, values.text, None, problems),
        auth_url=values.get(table, "auth_url", prefix, values.base_url, Account.auth_url, problems),
        api_url=values.get(table, "api_url", prefix, values.base_url, Account.api_url, problems),
        redirect_uri=values.get(
            table, "redirect_uri", prefix, values.text, Account.redirect_uri, problems
        ),
        refresh=_section(table, "refresh", prefix, defaults.refresh, problems),
        retry=_section(table, "retry", prefix, defaults.retry, problems),
        alerts=_section(table, "alerts", prefix, defaults.alerts, problems),
        **_oauth2_fields(table, prefix, problems),
    )
    _check_provider_keys(account, table, prefix, problems)
    for key, explanation in presets.wrong_combinations(account):
        problems.add(f"{prefix}{key}", explanation)
    return account if len(problems.items) == before else None


def _oauth2_fields(table: Mapping[str, Any], prefix: str, problems: values.Problems) -> Any:  # noqa: ANN401
    def get(key: str, convert: values.Converter, default: object) -> object:
        return values.get(table, key, prefix, convert, default, problems)

    return {
        "token_url": get("token_url", values.endpoint_url, None),
        "device_authorization_url": get("device_authorization_url", values.endpoint_url, None),
        "authorization_url": get("authorization_url", values.endpoint_url, None),
        "revocation_url": get("revocation_url", values.endpoint_url, None),
        "scopes": get("scopes", values.scopes, ()),
        "authorization_params": get("authorization_params", values.parameters, ()),
        "preset": table.get("preset") if table.get("preset") in presets.PRESETS else None,
        "client_auth": get("client_auth", values.choice(CLIENT_AUTH), "client_secret_basic"),
        "default_lifetime": get("default_lifetime", values.positive_duration, 3600),
        "redirect_port": get("redirect_port", values.port, 0),
        "git_hosts": get("git_host", values.hosts, ()),
        "git_username": get("git_username", values.text, "oauth2"),
    }


def _check_provider_keys(
    account: Account, table: Mapping[str, Any], prefix: str, problems: values.Problems
) -> None:
    """Keys of one provider kind are mistakes in the other; say so instead of ignoring them."""
    if account.provider == "trakt":
        for key in sorted(OAUTH2_KEYS & set(table)):
            problems.add(f"{prefix}{key}", 'only used with provider = "oauth2"')
    elif account.provider == "oauth2":
        for key in sorted(TRAKT_KEYS & set(table)):
            problems.add(f"{prefix}{key}", 'only used with provider = "trakt"')
        if "token_url" not in table:
            problems.add(f"{prefix}token_url", "missing; the provider's OAuth2 token endpoint")
        if not ({"device_authorization_url", "authorization_url"} & set(table)):
            problems.add(
                f"{prefix}device_authorization_url",
                "missing; set it (device login) or authorization_url (browser login), or both",
            )
        if account.client_auth == "none" and "client_secret" in table:
            problems.add(f"{prefix}client_auth", '"none" sends no client_secret; remove one')


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
        provider="",
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
