"""Presets for Google and Microsoft, the combinations `config check` explains, `config init`."""

from __future__ import annotations

import pytest

from tvmaniac_refreshd.config.settings import OAuth2Settings, parse_config, settings_of
from tvmaniac_refreshd.config.starter import starter_config
from tvmaniac_refreshd.core.errors import ConfigError, UsageError


def account_from(body: str) -> OAuth2Settings:
    """The oauth2 settings of the one account ``body`` configures."""
    return settings_of(parse_config("[accounts.mail]\n" + body).select(None), OAuth2Settings)


def problems_of(body: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config("[accounts.mail]\n" + body)
    return caught.value.problems


class TestGoogle:
    def test_fills_in_what_works_for_gmail(self) -> None:
        account = account_from('preset = "google"\nclient_id = "x"\nclient_secret = "s"\n')

        assert account.token_url == "https://oauth2.googleapis.com/token"
        assert account.authorization_url == "https://accounts.google.com/o/oauth2/v2/auth"
        assert account.revocation_url == "https://oauth2.googleapis.com/revoke"
        assert account.device_authorization_url is None  # the browser flow
        assert account.scopes == ("https://mail.google.com/",)
        assert account.client_auth == "client_secret_post"
        assert dict(account.authorization_params) == {"access_type": "offline", "prompt": "consent"}

    def test_a_key_the_account_sets_wins(self) -> None:
        account = account_from(
            'preset = "google"\nclient_id = "x"\nclient_auth = "client_secret_basic"\n'
            'client_secret = "s"\ntoken_url = "http://127.0.0.1:9/token"\n'
        )

        assert account.token_url == "http://127.0.0.1:9/token"
        assert account.client_auth == "client_secret_basic"

    def test_mail_scope_with_the_device_flow_is_explained(self) -> None:
        """The example config used to suggest exactly this endpoint."""
        problems = problems_of(
            'preset = "google"\nclient_id = "x"\nclient_secret = "s"\n'
            'device_authorization_url = "https://oauth2.googleapis.com/device/code"\n'
        )

        assert len(problems) == 1
        assert problems[0].startswith("accounts.mail.device_authorization_url: Google refuses")
        assert "browser flow" in problems[0]

    def test_a_hand_written_google_account_is_recognised_by_its_hosts(self) -> None:
        problems = problems_of(
            'provider = "oauth2"\nclient_id = "x"\nclient_secret = "s"\n'
            'token_url = "https://oauth2.googleapis.com/token"\n'
            'device_authorization_url = "https://oauth2.googleapis.com/device/code"\n'
            'authorization_url = "https://accounts.google.com/o/oauth2/v2/auth"\n'
            'scopes = ["https://mail.google.com/", "offline_access"]\n'
        )

        keys = sorted(problem.split(":")[0] for problem in problems)
        assert keys == [
            "accounts.mail.authorization_params",
            "accounts.mail.device_authorization_url",
            "accounts.mail.scopes",
        ]


class TestMicrosoft:
    def test_fills_in_the_tenant(self) -> None:
        account = account_from('preset = "microsoft"\ntenant = "consumers"\nclient_id = "x"\n')

        base = "https://login.microsoftonline.com/consumers/oauth2/v2.0"
        assert account.token_url == f"{base}/token"
        assert account.device_authorization_url == f"{base}/devicecode"
        assert account.revocation_url is None
        assert "offline_access" in account.scopes
        assert "https://outlook.office.com/SMTP.Send" in account.scopes
        assert account.client_auth == "none"
        assert not account.needs_client_secret()

    def test_default_tenant_is_common(self) -> None:
        account = account_from('preset = "microsoft"\nclient_id = "x"\n')

        assert account.token_url is not None
        assert "/common/" in account.token_url

    def test_without_offline_access_is_explained(self) -> None:
        (problem,) = problems_of(
            'preset = "microsoft"\nclient_id = "x"\n'
            'scopes = ["https://outlook.office.com/SMTP.Send"]\n'
        )

        assert problem.startswith("accounts.mail.scopes: Microsoft issues a refresh token only")


class TestMistakes:
    @pytest.mark.parametrize(
        ("body", "key"),
        [
            ('preset = "yahoo"\nclient_id = "x"\n', "accounts.mail.preset"),
            ('preset = "google"\ntenant = "x"\nclient_id = "x"\nclient_secret = "s"\n', "tenant"),
            ('preset = "microsoft"\ntenant = "a/b"\nclient_id = "x"\n', "accounts.mail.tenant"),
            ('provider = "trakt"\npreset = "google"\nclient_id = "x"\n', "provider"),
            ('provider = "oauth2"\ntenant = "x"\nclient_id = "x"\n', "accounts.mail.tenant"),
        ],
    )
    def test_named(self, body: str, key: str) -> None:
        assert any(key in problem for problem in problems_of(body))

    def test_authorization_params_cannot_override_the_logins_own(self) -> None:
        problems = problems_of(
            'preset = "microsoft"\nclient_id = "x"\nauthorization_params = { state = "x" }\n'
        )

        assert problems == ["accounts.mail.authorization_params: state is set by the login itself"]


class TestConfigInit:
    def test_google(self) -> None:
        text = starter_config("123.apps.googleusercontent.com", "gmail", "google")
        account = parse_config(text).select("gmail")

        assert settings_of(account, OAuth2Settings).preset == "google"
        assert account.client_id == "123.apps.googleusercontent.com"

    def test_microsoft_with_tenant(self) -> None:
        text = starter_config("app-id", "outlook", "microsoft", "consumers")

        account = parse_config(text).select("outlook")

        assert "/consumers/" in settings_of(account, OAuth2Settings).token_url

    def test_bad_tenant(self) -> None:
        with pytest.raises(UsageError, match="--tenant"):
            starter_config("app-id", "outlook", "microsoft", 'x"\n[y]')
