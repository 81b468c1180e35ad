"""The command line's shape: global options on both sides of the verb; the starter config."""

from __future__ import annotations

import io
import stat
from pathlib import Path

import pytest

from tvmaniac_refreshd.cli.parser import build_parser, main
from tvmaniac_refreshd.config.settings import parse_config
from tvmaniac_refreshd.config.starter import starter_config, write_new
from tvmaniac_refreshd.core.errors import RefreshdError, UsageError


@pytest.mark.parametrize(
    "argv",
    [
        ["--config", "c.toml", "--account", "work", "-v", "token"],
        ["token", "--config", "c.toml", "--account", "work", "-v"],
        ["--config", "c.toml", "token", "--account", "work", "-v"],
        ["-v", "--account", "work", "token", "--config", "c.toml"],
    ],
)
def test_global_options_on_either_side(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)

    assert (args.verb, args.config, args.account, args.verbose) == ("token", "c.toml", "work", 1)


def test_an_option_after_the_verb_does_not_erase_one_before() -> None:
    """A verb's parser leaves options it was not given alone (SUPPRESS, not None)."""
    args = build_parser().parse_args(["--account", "work", "-vv", "status", "--json"])

    assert (args.account, args.verbose, args.json) == ("work", 2, True)


def test_nested_actions_take_them_too() -> None:
    parser = build_parser()
    service = parser.parse_args(["service", "status", "--json", "--config", "x.toml"])
    init = parser.parse_args(["config", "init", "--client-id", "id", "--account", "home"])

    assert (service.service_verb, service.config, service.json) == ("status", "x.toml", True)
    assert (init.config_verb, init.client_id, init.account) == ("init", "id", "home")


def test_no_arguments_print_the_help() -> None:
    out = io.StringIO()

    assert main([], environ={}, out=out, err=io.StringIO()) == 0
    assert out.getvalue().startswith("usage: tvmaniac-refreshd")


def test_the_starter_config_loads_and_names_the_account() -> None:
    config = parse_config(starter_config('id "with" quotes\\', account="home"))

    assert config.select(None).client_id == 'id "with" quotes\\'
    assert list(config.accounts) == ["home"]


@pytest.mark.parametrize(
    ("client_id", "account"), [("", "default"), ("a\nb", "default"), ("a", "no way")]
)
def test_the_starter_config_refuses_what_would_not_load(client_id: str, account: str) -> None:
    with pytest.raises(UsageError):
        starter_config(client_id, account)


def test_write_new_is_private_and_never_replaces(tmp_path: Path) -> None:
    path = tmp_path / "dir" / "config.toml"
    write_new(path, "one")

    with pytest.raises(RefreshdError, match="already exists"):
        write_new(path, "two")
    assert path.read_text() == "one"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
