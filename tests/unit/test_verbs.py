"""Verbs run in process: the real parser, the verb module and the exit-code mapping, against the
composition root given a memory keyring, a scripted provider and a fake clock. No subprocess,
no network, no D-Bus: what used to cost a 1-2 s subprocess per case is a function call."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import FakeClock, MemoryBackend, ProviderParts
from tvmaniac_refreshd.cli import verbs
from tvmaniac_refreshd.cli.app import App
from tvmaniac_refreshd.cli.completion import model
from tvmaniac_refreshd.cli.grammar import Verb, no_arguments
from tvmaniac_refreshd.cli.options import Common, NoOptions, from_namespace
from tvmaniac_refreshd.cli.parser import build_parser, execute, parse
from tvmaniac_refreshd.cli.verbs import VERBS
from tvmaniac_refreshd.config.settings import Account, Config, parse_config
from tvmaniac_refreshd.core.errors import (
    EXIT_OK,
    EXIT_REAUTH,
    EXIT_TEMPORARY,
    SessionRejected,
    TransientError,
)
from tvmaniac_refreshd.core.tokens import TokenDocument, TokenSet
from tvmaniac_refreshd.storage.keyring_store import KeyringStore

START = 1_800_000_000.0
WEEK = 604_800
CONFIG = (
    '[refresh]\njitter = "0s"\n'
    '[accounts.default]\nprovider = "trakt"\nclient_id = "cid"\nclient_secret = "csecret"\n'
)


class ScriptedTrakt(ProviderParts):
    """Rotates the pair as Trakt does, or raises what the test scripted; records each spend."""

    def __init__(self) -> None:
        self.spent: list[str] = []
        self.revoked: list[str] = []
        self.fail_with: list[Exception] = []

    def refresh(self, refresh_token: str, *, now: float) -> TokenSet:
        self.spent.append(refresh_token)
        if self.fail_with:
            raise self.fail_with.pop(0)
        number = len(self.spent)
        return TokenSet(
            f"access-{number:04d}-xxxxxxxx", f"refresh-{number:04d}-xxxxxxxx", int(now), WEEK,
            int(now) + WEEK,
        )  # fmt: skip

    def revoke(self, tokens: TokenSet, *, now: float) -> None:
        self.revoked.append(tokens.access_token)


@dataclass
class World:
    """One user's machine for the verbs: its config, keyring, state directory and provider."""

    tmp: Path
    config: Config
    clock: FakeClock = field(default_factory=lambda: FakeClock(START))
    backend: MemoryBackend = field(default_factory=MemoryBackend)
    provider: ScriptedTrakt = field(default_factory=ScriptedTrakt)
    out: io.StringIO = field(default_factory=io.StringIO)
    err: io.StringIO = field(default_factory=io.StringIO)
    secrets: list[str | None] = field(default_factory=list)

    @property
    def environ(self) -> Mapping[str, str]:
        # No runtime directory, no bus: the memory keyring is the only store reached.
        return {"HOME": str(self.tmp)}  # the state directory follows HOME (storage/layout.py)

    @property
    def store(self) -> KeyringStore:
        return KeyringStore(self.config.store, lambda: self.backend)

    def run(self, *argv: str) -> int:
        parser = build_parser()
        parsed = parse(parser, argv)
        assert parsed.verb is not None

        def provider(account: Account, secret: str | None) -> ScriptedTrakt:
            self.secrets.append(secret)
            return self.provider

        app = App(
            from_namespace(Common, parsed.namespace),
            environ=self.environ,
            out=self.out,
            err=self.err,
            clock=self.clock,
            sleep=self.clock.sleep,
            config=self.config,
            store=self.store,
            provider=provider,
            parser=parser,
        )
        return execute(app, parsed.verb, parsed.namespace)

    def log_in(self, *, at: float) -> None:
        account = self.config.accounts["default"]
        tokens = TokenSet("access-0000-xxxxxxxx", "refresh-0000-xxxxxxxx", int(at), WEEK,
                          int(at) + WEEK)  # fmt: skip
        self.store.save(TokenDocument("default", "trakt", tokens, account.fingerprint(), int(at)))


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path, parse_config(CONFIG, source=str(tmp_path / "config.toml")))


def test_token_prints_the_stored_token_and_sends_nothing_when_not_due(world: World) -> None:
    world.log_in(at=START)

    assert world.run("token") == EXIT_OK

    assert world.out.getvalue() == "access-0000-xxxxxxxx\n"
    assert world.provider.spent == []


def test_token_refreshes_a_due_token_once_and_stores_it_first(world: World) -> None:
    world.log_in(at=START)
    world.clock.advance(WEEK - 3600)  # inside the refresh window

    assert world.run("token", "--json") == EXIT_OK

    printed = json.loads(world.out.getvalue())
    assert (printed["account"], printed["access_token"]) == ("default", "access-0001-xxxxxxxx")
    assert world.provider.spent == ["refresh-0000-xxxxxxxx"]
    assert world.secrets == ["csecret"]  # the provider got the config's client secret
    stored = world.store.load("default")
    assert stored is not None
    assert stored.tokens.refresh_token == "refresh-0001-xxxxxxxx"


def test_refresh_force_reports_and_a_rejection_exits_77(world: World) -> None:
    world.log_in(at=START)

    assert world.run("refresh", "--force") == EXIT_OK
    assert world.out.getvalue().startswith("default: refreshed; expires ")

    world.provider.fail_with.append(SessionRejected("invalid_grant", account="default"))
    assert world.run("refresh", "--force") == EXIT_REAUTH
    assert "needs a new login" in world.err.getvalue()
    assert world.provider.spent == ["refresh-0000-xxxxxxxx", "refresh-0001-xxxxxxxx"]


def test_a_passing_failure_keeps_the_tokens_and_exits_75(world: World) -> None:
    world.log_in(at=START)
    world.provider.fail_with.append(TransientError("HTTP 503"))

    assert world.run("refresh", "--force") == EXIT_TEMPORARY

    stored = world.store.load("default")
    assert stored is not None
    assert stored.tokens.refresh_token == "refresh-0000-xxxxxxxx"


def test_status_json_and_check_without_a_login(world: World) -> None:
    assert world.run("status", "--json", "--check") == EXIT_REAUTH

    report = json.loads(world.out.getvalue())
    assert [(a["name"], a["state"]) for a in report["accounts"]] == [("default", "logged_out")]
    assert report["store"]["backend"] == "keyring"


def test_logout_revokes_then_deletes(world: World) -> None:
    world.log_in(at=START)

    assert world.run("logout") == EXIT_OK

    assert world.provider.revoked == ["access-0000-xxxxxxxx"]
    assert world.store.load("default") is None
    assert "Logged out" in world.out.getvalue()


def test_an_unknown_account_is_a_usage_error_not_a_traceback(world: World) -> None:
    assert world.run("token", "--account", "nobody") == 2
    assert "no account named 'nobody'" in world.err.getvalue()


# -- one module per verb -----------------------------------------------------------------------


@pytest.mark.parametrize("verb", VERBS, ids=lambda verb: verb.name)
def test_each_verb_is_one_module_with_its_options_arguments_and_run(verb: Verb[Any]) -> None:
    """Adding a verb is one module and one line in the registry: nothing else names it."""
    module = verb.run.__module__
    assert module == f"{verbs.__name__}.{verb.name.replace(' ', '_').replace('-', '_')}"
    assert verb.arguments.__module__ in (module, no_arguments.__module__)
    assert verb.options is NoOptions or verb.options.__module__ == module
    assert sys.modules[module].VERB is verb


def test_the_parser_offers_exactly_the_registered_verbs_and_groups() -> None:
    offered = set(model(build_parser())) - {""}
    assert offered == {verb.name for verb in VERBS} | set(verbs.GROUPS)
