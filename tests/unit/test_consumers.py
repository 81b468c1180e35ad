"""The consumer surfaces' pure parts: token --json on the quick path, exec's command line,
git's credential stanza, the git_host keys, the completion model and the Python API's import."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.unit.test_quick_token import DOCUMENT, NOW, Machine
from tvmaniac_refreshd.cli.completion import model, script
from tvmaniac_refreshd.cli.parser import build_parser, main, split_exec
from tvmaniac_refreshd.cli.verbs.git_credential import StanzaInvalid, parse_stanza
from tvmaniac_refreshd.config.settings import Account, OAuth2Settings, parse_config, settings_of
from tvmaniac_refreshd.core.errors import ConfigError, UsageError
from tvmaniac_refreshd.core.token_json import json_line
from tvmaniac_refreshd.providers.trakt_browser import TraktBrowserLogin

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Machine:
    return Machine(tmp_path, monkeypatch)


class TestTokenJson:
    def test_the_quick_path_prints_the_object(self, machine: Machine) -> None:
        machine.remember()

        code, out = machine.token("token", "--json")

        assert code == 0
        assert json.loads(out) == {
            "format_version": 1,
            "account": "default",
            "access_token": "access-1",
            "token_type": "bearer",
            "expires_at": "2027-01-22T07:58:20Z",  # NOW - 100 + 7 days
        }
        assert out == json_line("default", "access-1", "bearer", int(DOCUMENT["expires_at"])) + "\n"  # type: ignore[call-overload]

    def test_json_twice_or_before_the_verb_goes_the_full_way(self, machine: Machine) -> None:
        machine.remember()

        assert machine.token("token", "--json", "--json") == (None, "")
        assert machine.token("--json", "token") == (None, "")

    def test_a_due_token_is_not_printed_as_json_either(self, machine: Machine) -> None:
        machine.remember(fresh_until=NOW - 1)

        assert machine.token("token", "--json") == (None, "")


class TestExecCommandLine:
    @pytest.mark.parametrize(
        ("argv", "words", "command"),
        [
            (["exec", "--", "ls", "-l"], ["exec"], ["ls", "-l"]),
            (["--account", "exec", "exec", "--", "x"], ["--account", "exec", "exec"], ["x"]),
            (
                ["exec", "--env", "T", "--", "a", "--", "b"],
                ["exec", "--env", "T"],
                ["a", "--", "b"],
            ),
            (["exec", "ls"], ["exec", "ls"], None),
            (["token", "--", "x"], ["token", "--", "x"], None),
            (["--config", "c.toml", "exec", "--"], ["--config", "c.toml", "exec"], []),
        ],
    )
    def test_split(self, argv: list[str], words: list[str], command: list[str] | None) -> None:
        assert split_exec(argv) == (words, command)

    @pytest.mark.parametrize(
        "argv", [["exec"], ["exec", "true"], ["exec", "--"], ["exec", "--env", "A-B", "--", "true"]]
    )
    def test_usage_errors_exit_2_before_any_config_is_read(
        self, argv: list[str], tmp_path: Path
    ) -> None:
        err = io.StringIO()
        environ = {"TVMANIAC_REFRESHD_CONFIG": str(tmp_path / "missing.toml")}

        assert main(argv, environ=environ, out=io.StringIO(), err=err) == 2

    def test_a_missing_command_exits_127_before_any_config_is_read(self, tmp_path: Path) -> None:
        err = io.StringIO()
        environ = {
            "TVMANIAC_REFRESHD_CONFIG": str(tmp_path / "missing.toml"),
            "PATH": "/nonexistent",
        }

        code = main(["exec", "--", "no-such-tool"], environ=environ, out=io.StringIO(), err=err)

        assert code == 127
        assert "no-such-tool: command not found" in err.getvalue()


class TestStanza:
    def test_reads_up_to_the_blank_line(self) -> None:
        lines = ["protocol=https\n", "host=h:8443\n", "path=a=b\n", "\n", "host=later\n"]

        assert parse_stanza(lines) == {"protocol": "https", "host": "h:8443", "path": "a=b"}

    @pytest.mark.parametrize("line", ["garbage\n", "=value\n", "host=a\0b\n"])
    def test_refuses_what_git_would_not_send(self, line: str) -> None:
        with pytest.raises(StanzaInvalid):
            parse_stanza(["protocol=https\n", line])


OAUTH2 = (
    '[accounts.git]\nprovider = "oauth2"\nclient_id = "c"\n'
    'token_url = "https://id.example/token"\ndevice_authorization_url = "https://id.example/d"\n'
)


class TestGitHostKeys:
    def test_one_host_or_a_list(self) -> None:
        one = parse_config(OAUTH2 + 'git_host = "GitLab.example.com"\n').accounts["git"]
        many = parse_config(OAUTH2 + 'git_host = ["a.example", "b.example:8443"]\n')

        first = settings_of(one, OAuth2Settings)
        assert (first.git_hosts, first.git_username) == (("gitlab.example.com",), "oauth2")
        assert settings_of(many.accounts["git"], OAuth2Settings).git_hosts == (
            "a.example",
            "b.example:8443",
        )

    @pytest.mark.parametrize(
        "value", ['"https://gitlab.example.com"', "[]", "3", '"user@host"', '["a", 1]']
    )
    def test_a_bad_host_names_the_key(self, value: str) -> None:
        with pytest.raises(ConfigError) as caught:
            parse_config(OAUTH2 + f"git_host = {value}\n")
        assert "accounts.git.git_host" in str(caught.value)

    def test_trakt_accounts_have_no_git_host(self) -> None:
        text = '[accounts.t]\nprovider = "trakt"\nclient_id = "c"\ngit_host = "h"\n'
        with pytest.raises(ConfigError, match="only used with provider"):
            parse_config(text)


class TestCompletion:
    def test_the_model_has_every_verb_and_sub_verb(self) -> None:
        levels = model(build_parser())

        assert {"token", "exec", "git-credential", "completion", "service install"} <= set(levels)
        assert "--json" in levels["token"].options
        assert levels["service install"].values["--mode"] == ("daemon", "timer")
        assert set(levels["completion"].words) == {"bash", "zsh", "fish"}

    @pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
    def test_each_script_names_every_verb(self, shell: str) -> None:
        text = script(build_parser(), shell)

        for verb in ("login", "token", "exec", "git-credential", "completion", "install"):
            assert verb in text


def test_importing_the_api_loads_only_the_error_tree() -> None:
    probe = (
        "import sys\nimport tvmaniac_refreshd.api\n"
        "print(sorted(m for m in sys.modules if m.startswith('tvmaniac_refreshd')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True
    )

    assert json.loads(result.stdout.replace("'", '"')) == [
        "tvmaniac_refreshd",
        "tvmaniac_refreshd.api",
        "tvmaniac_refreshd.core",
        "tvmaniac_refreshd.core.errors",
    ]


class TestTraktBrowserLogin:
    def account(self, redirect_uri: str) -> Account:
        text = (
            '[accounts.t]\nprovider = "trakt"\nclient_id = "c"\n'
            f'auth_url = "https://auth.trakt.test"\nredirect_uri = "{redirect_uri}"\n'
        )
        return parse_config(text).accounts["t"]

    def test_the_registered_loopback_uri_is_used_exactly(self) -> None:
        login = TraktBrowserLogin(httpx.Client(), self.account("http://127.0.0.1:8765/callback"))

        assert login.registered_redirect_uri == "http://127.0.0.1:8765/callback"
        url = httpx.URL(login.authorization_request(login.registered_redirect_uri, "s", "c" * 43))
        assert str(url).startswith("https://auth.trakt.test/oauth/authorize?")
        assert url.params["code_challenge_method"] == "S256"
        assert url.params["redirect_uri"] == "http://127.0.0.1:8765/callback"

    @pytest.mark.parametrize(
        "uri",
        ["urn:ietf:wg:oauth:2.0:oob", "http://127.0.0.1/callback", "https://example.com:8765/cb"],
    )
    def test_anything_but_a_fixed_loopback_port_says_how_to_fix_it(self, uri: str) -> None:
        login = TraktBrowserLogin(httpx.Client(), self.account(uri))

        with pytest.raises(UsageError, match=r"redirect_uri = \"http://127.0.0.1:8765/callback\""):
            login.registered_redirect_uri  # noqa: B018
