"""The provider variants of an account: one typed settings class per ``provider = ...``.

Each variant carries its own keys and defaults, the endpoint its tokens are bound to, what
else the fingerprint binds, whether a client secret is needed, and how its keys are read and
checked. A new provider is one class here and one entry in ``VARIANTS``; nothing else in the
program compares provider names (tests/unit/test_architecture.py checks that).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, get_args
from urllib.parse import urlsplit

from tvmaniac_refreshd.config import values
from tvmaniac_refreshd.config.presets import PRESETS

ProviderName = Literal["trakt", "oauth2"]
ClientAuth = Literal["client_secret_basic", "client_secret_post", "none"]
CLIENT_AUTH: tuple[ClientAuth, ...] = get_args(ClientAuth)


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
class TraktSettings:
    """``provider = "trakt"``: Trakt's device flow under ``auth_url``."""

    name: ClassVar[Literal["trakt"]] = "trakt"
    keys: ClassVar[frozenset[str]] = frozenset({"auth_url", "api_url", "redirect_uri"})
    # Where a missing client_id is found: the one place config names a provider's site.
    client_id_source: ClassVar[str] = "your Trakt app's settings page"

    auth_url: str = "https://auth.trakt.tv"
    # Asked once, right after a login, who logged in (GET /users/settings).
    api_url: str = "https://api.trakt.tv"
    redirect_uri: str = "urn:ietf:wg:oauth:2.0:oob"

    @property
    def endpoint(self) -> str:
        """The URL a stored token is bound to: where it was issued and is refreshed."""
        return self.auth_url

    def bound_beyond_endpoint(self) -> tuple[str, ...]:
        """Trakt's revoke endpoint lives under ``auth_url``, which is bound already."""
        return ()

    def needs_client_secret(self) -> bool:
        """Trakt's device flow sends the client secret with every token request."""
        return True

    @property
    def redirect_port(self) -> int:
        """Trakt accepts only its registered redirect URI, whose port login listens on."""
        return 0

    def git_username_for(self, host: str) -> str | None:
        """Trakt tokens are not git credentials."""
        return None

    @classmethod
    def parse(
        cls, table: Mapping[str, Any], prefix: str, problems: values.Problems
    ) -> TraktSettings:
        def get(key: str, convert: values.Converter[str], default: str) -> str:
            return values.get(table, key, prefix, convert, default, problems)

        return cls(
            auth_url=get("auth_url", values.base_url, cls.auth_url),
            api_url=get("api_url", values.base_url, cls.api_url),
            redirect_uri=get("redirect_uri", values.text, cls.redirect_uri),
        )


@dataclass(frozen=True)
class OAuth2Settings:
    """``provider = "oauth2"``: standard endpoints (RFC 6749, 8628, 7009) and client auth."""

    name: ClassVar[Literal["oauth2"]] = "oauth2"
    keys: ClassVar[frozenset[str]] = frozenset(
        {
            "token_url",
            "device_authorization_url",
            "authorization_url",
            "revocation_url",
            "scopes",
            "authorization_params",
            "preset",
            "tenant",
            "client_auth",
            "default_lifetime",
            "redirect_port",
            "git_host",
            "git_username",
        }
    )
    client_id_source: ClassVar[str] = "the app registration"

    token_url: str  # required: parse reports it missing, and drops the account
    device_authorization_url: str | None = None
    authorization_url: str | None = None
    revocation_url: str | None = None
    scopes: tuple[str, ...] = ()
    # Extra parameters of the browser login's authorization request (Google's access_type).
    authorization_params: tuple[tuple[str, str], ...] = ()
    # config/presets.py: the preset that filled in the keys the account left out, by name.
    preset: str | None = None
    client_auth: ClientAuth = "client_secret_basic"
    default_lifetime: int = 3600  # when a token response has no expires_in
    redirect_port: int = 0  # the loopback redirect's port; 0 picks a free one
    git_hosts: tuple[str, ...] = ()  # `git-credential get` answers for these hosts
    git_username: str = "oauth2"  # the user name git sends with the token (GitLab's choice)

    @property
    def endpoint(self) -> str:
        return self.token_url

    def bound_beyond_endpoint(self) -> tuple[str, ...]:
        """`logout` sends the token to revocation_url: a server of another origin must not
        get a token issued elsewhere. One of the token endpoint's origin is the same party,
        and leaving it out keeps the logins made before revocation_url was bound."""
        revocation = canonical_url(self.revocation_url or "")
        if revocation and _origin(revocation) != _origin(self.token_url):
            return (revocation,)
        return ()

    def needs_client_secret(self) -> bool:
        """A public client (``client_auth = "none"``, PKCE) has none."""
        return self.client_auth != "none"

    def git_username_for(self, host: str) -> str | None:
        """The user name git gets with the token for ``host``; None if not one of ours."""
        return self.git_username if host in self.git_hosts else None

    @classmethod
    def parse(
        cls, table: Mapping[str, Any], prefix: str, problems: values.Problems
    ) -> OAuth2Settings:
        def url(key: str) -> str | None:
            return values.get(table, key, prefix, values.endpoint_url, None, problems)

        settings = cls(
            token_url=url("token_url") or "",
            device_authorization_url=url("device_authorization_url"),
            authorization_url=url("authorization_url"),
            revocation_url=url("revocation_url"),
            scopes=values.get(table, "scopes", prefix, values.scopes, cls.scopes, problems),
            authorization_params=values.get(
                table,
                "authorization_params",
                prefix,
                values.parameters,
                cls.authorization_params,
                problems,
            ),
            # apply_preset has named a preset it does not know.
            preset=table["preset"] if table.get("preset") in PRESETS else None,
            client_auth=values.get(
                table, "client_auth", prefix, values.choice(CLIENT_AUTH), cls.client_auth, problems
            ),
            default_lifetime=values.get(
                table,
                "default_lifetime",
                prefix,
                values.positive_duration,
                cls.default_lifetime,
                problems,
            ),
            redirect_port=values.get(
                table, "redirect_port", prefix, values.port, cls.redirect_port, problems
            ),
            git_hosts=values.get(table, "git_host", prefix, values.hosts, cls.git_hosts, problems),
            git_username=values.get(
                table, "git_username", prefix, values.text, cls.git_username, problems
            ),
        )
        if "token_url" not in table:
            problems.add(f"{prefix}token_url", "missing; the provider's OAuth2 token endpoint")
        if not ({"device_authorization_url", "authorization_url"} & set(table)):
            problems.add(
                f"{prefix}device_authorization_url",
                "missing; set it (device login) or authorization_url (browser login), or both",
            )
        if settings.client_auth == "none" and "client_secret" in table:
            problems.add(f"{prefix}client_auth", '"none" sends no client_secret; remove one')
        return settings


ProviderSettings = TraktSettings | OAuth2Settings
VARIANTS: dict[ProviderName, type[TraktSettings] | type[OAuth2Settings]] = {
    variant.name: variant for variant in (TraktSettings, OAuth2Settings)
}
PROVIDERS: tuple[ProviderName, ...] = tuple(VARIANTS)
