"""The TOML configuration: defaults, overrides, and errors that name every bad key at once."""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path
from typing import get_args, get_type_hints

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tvmaniac_refreshd.config.settings import (
    Account,
    OAuth2Settings,
    TraktSettings,
    canonical_url,
    load_config,
    parse_config,
    settings_of,
)
from tvmaniac_refreshd.core.errors import ConfigError, UsageError
from tvmaniac_refreshd.core.tokens import decode_document

MINIMAL = """
[accounts.default]
provider = "trakt"
client_id = "abc"
"""


def problems_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, source="test.toml")
    assert caught.value.source == "test.toml"
    assert caught.value.exit_code == 78
    return caught.value.problems


class TestParseConfig:
    def test_minimal_config_gets_defaults(self) -> None:
        """The design's minimum works, with Trakt's hosts and the 25 % policy."""
        config = parse_config(MINIMAL)

        account = config.select(None)
        assert account.name == "default"
        assert settings_of(account, TraktSettings).auth_url == "https://auth.trakt.tv"
        assert account.refresh.threshold == 0.25
        assert account.client_secret is None

    def test_example_file_parses(self) -> None:
        """The shipped example is a valid config."""
        text = Path("config/refreshd.example.toml").read_text()

        assert "default" in parse_config(text).accounts

    def test_account_overrides_global_policy(self) -> None:
        """[accounts.X.refresh] overrides [refresh], which overrides the built-in default."""
        config = parse_config(
            '[refresh]\nthreshold = "40%"\njitter = "0s"\n'
            '[accounts.a]\nprovider = "trakt"\nclient_id = "x"\n'
            '[accounts.a.refresh]\nmargin = "2h"\n'
            '[accounts.b]\nprovider = "trakt"\nclient_id = "y"\n'
        )

        assert (
            config.accounts["a"].refresh.threshold,
            config.accounts["a"].refresh.margin,
            config.accounts["a"].refresh.jitter,
        ) == (0.4, 7200, 0)
        assert config.accounts["b"].refresh.margin == 3600

    def test_every_problem_reported_at_once(self) -> None:
        """Several mistakes give one error listing each, with its key."""
        problems = problems_of(
            '[refresh]\nthreshold = "200%"\nmargin = 5\n[http]\nread_timeout = "0s"\n'
            '[accounts.a]\nprovider = "github"\nsecret = "x"\n'
        )

        keys = [problem.split(":")[0] for problem in problems]
        assert keys == [
            "refresh.threshold",
            "refresh.margin",
            "http.read_timeout",
            "accounts.a.secret",
            "accounts.a.provider",
            "accounts.a.client_id",
        ]
        assert "did you mean 'client_secret'" in problems[3]

    def test_plain_http_only_to_loopback(self) -> None:
        """A token must never travel unencrypted across a network."""
        problems = problems_of(MINIMAL + 'auth_url = "http://example.com"\n')

        assert problems == [
            "accounts.default.auth_url: must use https (plain http is only allowed to a "
            "loopback address)"
        ]
        account = parse_config(MINIMAL + 'auth_url = "http://127.0.0.1:8080/"\n').select(None)
        assert settings_of(account, TraktSettings).auth_url == ("http://127.0.0.1:8080")

    def test_no_accounts(self) -> None:
        """An empty file says what to add."""

        assert problems_of("") == [
            "accounts: no account configured; add an [accounts.default] table"
        ]

    def test_empty_account_table(self) -> None:
        """An account with no keys is reported, not silently dropped."""

        assert problems_of("[accounts.default]\n") == [
            "accounts.default.provider: missing; set it to one of: trakt, oauth2",
            "accounts.default.client_id: missing; copy it from your Trakt app's settings page",
        ]

    def test_bad_account_name(self) -> None:
        """Account names become keyring user names and file names, so they are restricted."""

        assert "accounts.a b" in problems_of('[accounts."a b"]\nprovider="trakt"\nclient_id="x"')[0]

    def test_invalid_toml_names_the_place(self) -> None:
        """A syntax error says where it is."""

        assert "line 1" in problems_of("[accounts\n")[0]

    def test_select_unknown_account(self) -> None:
        """Asking for an account that is not configured lists the ones that are."""
        config = parse_config(MINIMAL)

        with pytest.raises(UsageError, match=r"no account named 'x' .*\(configured: default\)"):
            config.select("x")

    TWO = (
        '[accounts.work]\nprovider = "trakt"\nclient_id = "w"\n'
        '[accounts.home]\nprovider = "trakt"\nclient_id = "h"\n'
    )

    def test_several_accounts_and_none_chosen_is_a_usage_error(self) -> None:
        """Two accounts, no `default`, no default_account: exit 2, naming them sorted."""
        with pytest.raises(UsageError) as caught:
            parse_config(self.TWO).select(None)

        assert str(caught.value) == "several accounts: pass --account NAME (home, work)"
        assert caught.value.exit_code == 2

    def test_selection_order(self) -> None:
        """A name wins, then default_account, then the only account, then `default`."""
        chosen = parse_config('default_account = "home"\n' + self.TWO)
        with_default = parse_config(self.TWO + MINIMAL)

        assert chosen.select(None).name == "home"
        assert chosen.select("work").name == "work"
        assert parse_config(MINIMAL.replace("default", "solo")).select(None).name == "solo"
        assert with_default.select(None).name == "default"

    def test_default_account_must_exist(self) -> None:
        """default_account naming no account is a config problem that lists the accounts."""
        assert problems_of('default_account = "gone"\n' + self.TWO) == [
            "default_account: no account named 'gone' (home, work)"
        ]

    def test_fingerprint_follows_host_and_client(self) -> None:
        """A token is bound to the provider host and client it was issued for."""
        one = parse_config(MINIMAL).select(None)
        other_host = parse_config(MINIMAL + 'auth_url = "https://auth2.example"\n').select(None)
        policy_change = parse_config(MINIMAL + '[accounts.default.refresh]\njitter="1s"').select(
            None
        )

        assert one.fingerprint() != other_host.fingerprint()
        assert one.fingerprint() == policy_change.fingerprint()

    def test_fingerprint_binds_a_revocation_url_of_another_origin(self) -> None:
        """Issue 13, finding 1: `logout` sent the token to a revocation_url the login never saw."""
        base = (
            '[accounts.default]\nprovider = "oauth2"\nclient_id = "c"\n'
            'token_url = "https://idp.example/token"\n'
            'device_authorization_url = "https://idp.example/device"\n'
        )

        def fingerprint(revocation: str | None) -> str:
            extra = f'revocation_url = "{revocation}"\n' if revocation else ""
            return parse_config(base + extra).select(None).fingerprint()

        assert fingerprint("https://evil.example/revoke") != fingerprint(None)
        assert fingerprint("https://evil.example/revoke") != fingerprint(
            "https://other.example/revoke"
        )
        # The token endpoint's own server: the same party, and older logins stay valid.
        assert fingerprint("https://idp.example/revoke") == fingerprint(None)

    @settings(max_examples=200)
    @given(
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
            lambda inner: st.dictionaries(st.text(max_size=8), inner, max_size=4),
            max_leaves=10,
        )
    )
    def test_any_account_table_gives_config_or_config_error(self, value: object) -> None:
        """No account content raises anything but ConfigError."""
        import tomllib  # noqa: PLC0415

        document: dict[str, object] = {"accounts": {"default": value}}
        text = _to_toml(document)
        if text is None:
            return
        try:
            tomllib.loads(text)
        except tomllib.TOMLDecodeError:
            return
        with contextlib.suppress(ConfigError):
            parse_config(text)


def _toml_value(item: object) -> str | None:  # noqa: PLR0911
    """Render a generated value as inline TOML, or None where TOML has no form for it."""
    if isinstance(item, bool):
        return "true" if item else "false"
    if isinstance(item, int):
        return str(item)
    if isinstance(item, float):
        return repr(item) if math.isfinite(item) else None
    if isinstance(item, str):
        return '"' + "".join(f"\\u{ord(ch):04x}" for ch in item) + '"'
    if isinstance(item, dict):
        parts = []
        for key, sub in item.items():
            rendered = _toml_value(sub)
            if rendered is None:
                return None
            parts.append(f"{_toml_value(key)} = {rendered}")
        return "{" + ", ".join(parts) + "}"
    return None


def _to_toml(document: dict[str, object]) -> str | None:
    """A tiny TOML writer for generated documents: top-level keys with inline values."""
    lines = []
    for key, item in document.items():
        rendered = _toml_value(item)
        if rendered is None:
            return None
        lines.append(f"{key} = {rendered}")
    return "\n".join(lines)


class TestLoadConfig:
    def test_missing_file_says_how_to_start(self, tmp_path: Path) -> None:
        """A missing config says how to create one: `config init`."""
        with pytest.raises(ConfigError, match=r"create it with `tvmaniac-refreshd config init`"):
            load_config(tmp_path / "nope.toml")

    def test_world_readable_secret_warns(self, tmp_path: Path) -> None:
        """A client secret in a file others can read gives a warning with the chmod fix."""
        path = tmp_path / "config.toml"
        path.write_text(MINIMAL + 'client_secret = "s3cret-value"\n')
        os.chmod(path, 0o644)

        warnings = load_config(path).warnings

        assert len(warnings) == 1
        assert f"chmod 600 {path}" in warnings[0]
        assert "s3cret-value" not in warnings[0]
        os.chmod(path, 0o600)
        assert load_config(path).warnings == ()

    def test_not_utf8(self, tmp_path: Path) -> None:
        """Binary junk is a config error, not a crash."""
        path = tmp_path / "config.toml"
        path.write_bytes(b"\xff\xfe\x00")

        with pytest.raises(ConfigError, match="not UTF-8"):
            load_config(path)


class TestExampleFile:
    def test_documents_every_key(self) -> None:
        """Each key the parser knows appears in the example file, set or commented."""
        from tvmaniac_refreshd.config.settings import _ACCOUNT_KEYS, SECTIONS  # noqa: PLC0415

        text = Path("config/refreshd.example.toml").read_text()
        keys = {key for converters in SECTIONS.values() for key in converters} | _ACCOUNT_KEYS
        keys.add("default_account")
        missing = [
            key
            for key in sorted(keys - set(SECTIONS))
            if f"\n{key} = " not in text and f"\n# {key} = " not in text
        ]

        assert missing == []


OAUTH2 = """
[accounts.mail]
provider = "oauth2"
client_id = "refreshd-basic"
"""
ENDPOINT_KEYS = ("token_url", "device_authorization_url", "authorization_url", "revocation_url")
# Written by the code before endpoints were kept byte for byte (it stripped trailing slashes
# and refused queries): the account's token_url was "https://idp.example/o/token/".
STORED_BEFORE = (
    '{"format":"tvmaniac-refreshd/tokens","version":1,"account":"mail","provider":"oauth2",'
    '"fingerprint":"sha256:a095238ed2379d708fc4679f019e006b","obtained_at":1800000000,'
    '"access_token":"at-1","refresh_token":"rt-1","token_type":"bearer",'
    '"scope":"openid offline_access","created_at":1800000000,"expires_in":3600,'
    '"expires_at":1800003600}'
)


def oauth2_account(**urls: str) -> Account:
    """An oauth2 account with every endpoint set, ``urls`` overriding them."""
    endpoints = {key: f"https://idp.example/o/{key}" for key in ENDPOINT_KEYS} | urls
    lines = "".join(f'{key} = "{value}"\n' for key, value in endpoints.items())
    return parse_config(OAUTH2 + lines).select(None)


class TestUrls:
    @pytest.mark.parametrize("key", ENDPOINT_KEYS)
    def test_endpoint_keeps_its_trailing_slash(self, key: str) -> None:
        """Django and Rails servers end endpoints with '/' and answer 404 without it."""
        account = oauth2_account(**{key: "https://idp.example/o/token/"})

        assert getattr(account.settings, key) == "https://idp.example/o/token/"

    @pytest.mark.parametrize("key", ENDPOINT_KEYS)
    def test_endpoint_keeps_its_query(self, key: str) -> None:
        """RFC 6749 §3.1, §3.2: an endpoint's query component MUST be retained (B2C's ?p=)."""
        url = "https://idp.example/tfp/oauth2/v2.0/token?p=B2C_1_signin&x=%2F"
        account = oauth2_account(**{key: url})

        assert getattr(account.settings, key) == url

    @pytest.mark.parametrize(
        ("url", "problem"),
        [
            ("https://idp.example/token#frag", "must not have a fragment"),
            ("https://user:pw@idp.example/token", "must not hold a user name or password"),
            ("https://user@idp.example/token", "must not hold a user name or password"),
            ("ftp://idp.example/token", "is not an http(s) URL"),
            ("idp.example/token", "is not an http(s) URL"),
            ("http://idp.example/token", "must use https"),
        ],
    )
    @pytest.mark.parametrize("key", ENDPOINT_KEYS)
    def test_unsafe_endpoint_is_refused_naming_the_key(
        self, key: str, url: str, problem: str
    ) -> None:
        """Exit 78, with the key's full name, for a URL a secret must not be sent to."""
        endpoints = {k: f"https://idp.example/o/{k}" for k in ENDPOINT_KEYS} | {key: url}
        text = OAUTH2 + "".join(f'{k} = "{v}"\n' for k, v in endpoints.items())
        problems = problems_of(text)

        assert len(problems) == 1
        assert problems[0].startswith(f"accounts.mail.{key}: ")
        assert problem in problems[0]

    @pytest.mark.parametrize("host", ["127.0.0.1:8080", "localhost", "[::1]:9"])
    def test_plain_http_to_loopback_keeps_slash_and_query(self, host: str) -> None:
        url = f"http://{host}/o/token/?p=x"

        assert settings_of(oauth2_account(token_url=url), OAuth2Settings).token_url == url

    @pytest.mark.parametrize("key", ["auth_url", "api_url"])
    @pytest.mark.parametrize(
        "written",
        ["https://auth.example/base", "https://auth.example/base/", "https://auth.example/base//"],
    )
    def test_base_url_joins_with_or_without_slash(self, key: str, written: str) -> None:
        """Trakt's auth_url is a base that paths are appended to: normalized, one slash."""
        account = parse_config(MINIMAL + f'{key} = "{written}"\n').select(None)

        assert (
            getattr(account.settings, key) + "/oauth/token"
            == "https://auth.example/base/oauth/token"
        )

    @pytest.mark.parametrize("key", ["auth_url", "api_url"])
    def test_base_url_refuses_a_query(self, key: str) -> None:
        """A path cannot be appended after a query; say so instead of sending a broken URL."""
        problems = problems_of(MINIMAL + f'{key} = "https://auth.example/?p=x"\n')

        assert problems == [
            f"accounts.default.{key}: must not have a query (?...): paths are appended to it"
        ]

    def test_stored_login_still_matches_after_the_change(self) -> None:
        """A document stored before endpoints were kept as written still belongs to the
        account: the fingerprint compares the canonical form, not the exact string."""
        stored = decode_document(STORED_BEFORE, "mail")
        account = oauth2_account(token_url="https://idp.example/o/token/")

        assert settings_of(account, OAuth2Settings).token_url == "https://idp.example/o/token/"
        assert account.fingerprint() == stored.fingerprint

    @pytest.mark.parametrize(
        ("text", "before"),
        [
            # Each value is what Account.fingerprint() returned before the change.
            (MINIMAL, "sha256:e972d4053d0de5e9b66573f94fb95a8b"),
            (
                MINIMAL + 'auth_url = "https://auth.trakt.tv/"\n',
                "sha256:e972d4053d0de5e9b66573f94fb95a8b",
            ),
            (
                MINIMAL + 'auth_url = "http://127.0.0.1:8080/prefix/"\n',
                "sha256:ca1e0c99f2b7f05d0ee32199d407130e",
            ),
            (
                OAUTH2 + 'device_authorization_url = "https://idp.example/d"\n'
                'token_url = "https://idp.example/o/token"\n',
                "sha256:a095238ed2379d708fc4679f019e006b",
            ),
        ],
    )
    def test_fingerprint_is_unchanged(self, text: str, before: str) -> None:
        assert parse_config(text).select(None).fingerprint() == before

    def test_fingerprint_tells_queries_apart(self) -> None:
        """Another B2C policy is another endpoint: a token is not sent across them."""
        one = oauth2_account(token_url="https://idp.example/token?p=B2C_1_a")
        other = oauth2_account(token_url="https://idp.example/token?p=B2C_1_b")
        bare = oauth2_account(token_url="https://idp.example/token")

        assert len({one.fingerprint(), other.fingerprint(), bare.fingerprint()}) == 3
        assert (
            one.fingerprint()
            == oauth2_account(token_url="https://idp.example/token/?p=B2C_1_a").fingerprint()
        )

    @pytest.mark.parametrize(
        ("written", "canonical"),
        [
            ("https://idp.example/o/token/", "https://idp.example/o/token"),
            ("https://idp.example/o/token", "https://idp.example/o/token"),
            ("https://idp.example/", "https://idp.example"),
            ("https://idp.example/o/token/?p=a/", "https://idp.example/o/token?p=a/"),
        ],
    )
    def test_canonical_url(self, written: str, canonical: str) -> None:
        assert canonical_url(written) == canonical


class TestExampleDefaults:
    """The example says "every key below shows its default": hold it to that."""

    TEXT = Path("config/refreshd.example.toml").read_text()

    def test_set_values_are_the_defaults(self) -> None:
        """Every value the example sets (but the account's placeholders) is the built-in one."""
        from dataclasses import replace  # noqa: PLC0415

        from tvmaniac_refreshd.config.settings import (  # noqa: PLC0415
            Account,
            DaemonSettings,
            HttpSettings,
            StoreSettings,
        )

        config = parse_config(self.TEXT)
        account = config.accounts["default"]
        bare = Account(name="default", client_id=account.client_id, settings=TraktSettings())

        assert (config.http, config.store, config.daemon) == (
            HttpSettings(),
            StoreSettings(),
            DaemonSettings(),
        )
        assert replace(account, client_secret=None) == bare
        assert account.provider == "trakt"

    def test_commented_values_are_the_defaults(self) -> None:
        """A commented-out account key with a default shows that default."""
        import dataclasses  # noqa: PLC0415
        import re  # noqa: PLC0415

        from tvmaniac_refreshd.config.settings import TRAKT_KEYS  # noqa: PLC0415

        defaults = {
            field.name: field.default
            for variant in (TraktSettings, OAuth2Settings)
            for field in dataclasses.fields(variant)
            if field.default not in (None, (), dataclasses.MISSING)
            and not dataclasses.is_dataclass(field.default)
        }
        checked = []
        for key, value in re.findall(r"^# (\w+) = (.+)$", self.TEXT, re.MULTILINE):
            if key not in defaults:
                continue
            kind = "trakt" if key in TRAKT_KEYS else "oauth2"
            text = (
                f'[accounts.a]\nprovider = "{kind}"\nclient_id = "x"\n'
                'token_url = "https://idp.test/token"\n'
                'device_authorization_url = "https://idp.test/device"\n'
                if kind == "oauth2"
                else '[accounts.a]\nprovider = "trakt"\nclient_id = "x"\n'
            )
            parsed = parse_config(f"{text}{key} = {value}\n").accounts["a"]
            checked.append(key)
            assert getattr(parsed.settings, key) == defaults[key], key

        assert checked  # the example does show commented defaults

    @pytest.mark.parametrize("stale", ["only provider so far", "is the only provider"])
    def test_no_stale_wording(self, stale: str) -> None:
        assert stale not in self.TEXT


class TestProviderVariants:
    """Each provider's settings are a typed variant of their own, with their own defaults."""

    def test_an_account_holds_only_its_own_providers_keys(self) -> None:
        trakt = parse_config(MINIMAL).select(None)
        oauth2 = oauth2_account(token_url="https://idp.example/token")

        assert type(trakt.settings) is TraktSettings
        assert type(oauth2.settings) is OAuth2Settings
        assert not hasattr(trakt.settings, "token_url")
        assert not hasattr(oauth2.settings, "auth_url")

    def test_the_defaults_are_stated_once(self) -> None:
        """Parsing an account that sets only the required keys gives the class's defaults."""
        parsed = oauth2_account()

        url = "https://idp.example/o/{}".format
        assert parsed.settings == OAuth2Settings(
            token_url=url("token_url"),
            device_authorization_url=url("device_authorization_url"),
            authorization_url=url("authorization_url"),
            revocation_url=url("revocation_url"),
        )
        assert parse_config(MINIMAL).select(None).settings == TraktSettings()

    def test_each_variant_says_what_it_binds_and_needs(self) -> None:
        trakt = TraktSettings(auth_url="https://auth.test")
        public = OAuth2Settings(token_url="https://idp.test/t", client_auth="none")

        assert (trakt.endpoint, trakt.needs_client_secret()) == ("https://auth.test", True)
        assert (public.endpoint, public.needs_client_secret()) == ("https://idp.test/t", False)
        assert OAuth2Settings(
            token_url="https://idp.test/t", revocation_url="https://other.test/r"
        ).bound_beyond_endpoint() == ("https://other.test/r",)

    def test_closed_sets_are_literal_types(self) -> None:
        from tvmaniac_refreshd.config.settings import StoreSettings  # noqa: PLC0415
        from tvmaniac_refreshd.service.base import ServiceState  # noqa: PLC0415

        store = get_type_hints(StoreSettings)
        assert get_args(store["backend"]) == ("keyring", "file")
        assert get_args(store["encrypt"]) == ("none", "systemd-creds")
        assert get_args(get_type_hints(OAuth2Settings)["client_auth"]) == (
            "client_secret_basic",
            "client_secret_post",
            "none",
        )
        mode, _ = get_args(get_type_hints(ServiceState)["mode"])
        assert get_args(mode) == ("daemon", "timer")
        provider = vars(Account)["provider"].fget
        assert get_args(get_type_hints(provider)["return"]) == ("trakt", "oauth2")
