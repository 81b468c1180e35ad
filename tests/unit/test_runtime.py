"""The composition root: it alone owns the config, builds the providers on first use and one
refresher per account, and hands the daemon new ones after a reload."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import pytest

from tests.fakes import MemoryBackend, ProviderParts
from tvmaniac_refreshd.config.settings import Account, StoreSettings, TraktSettings
from tvmaniac_refreshd.core.errors import ConfigError
from tvmaniac_refreshd.runtime.root import Runtime
from tvmaniac_refreshd.runtime.serve import engines, reloaded
from tvmaniac_refreshd.storage.keyring_store import KeyringStore

ONE = '[accounts.a]\nprovider = "trakt"\nclient_id = "one"\nclient_secret = "s"\n'
TWO = ONE + '[accounts.b]\nprovider = "trakt"\nclient_id = "two"\nclient_secret = "s"\n'


def runtime_at(path: Path, text: str) -> Runtime:
    path.write_text(text)
    path.chmod(0o600)
    backend = MemoryBackend()
    store = KeyringStore(StoreSettings(), lambda: backend)
    return Runtime(
        config_file=str(path),
        environ={"HOME": str(path.parent)},
        err=io.StringIO(),
        store=store,
        provider=lambda account, secret: ProviderParts(),
    )


def test_the_daemon_gets_one_refresher_per_account(tmp_path: Path) -> None:
    runtime = runtime_at(tmp_path / "config.toml", TWO)

    built = engines(runtime)

    assert built.config is runtime.config
    assert sorted(built.refreshers) == ["a", "b"]
    account = runtime.config.accounts["a"]
    assert built.refresher(account) is built.refreshers["a"]  # the same one each time


def test_after_a_reload_the_root_and_the_daemon_hold_the_same_new_config(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    runtime = runtime_at(path, ONE)
    before = engines(runtime)
    path.write_text(TWO)

    after = reloaded(runtime)

    assert after.config is runtime.config  # one owner: nothing else to update on SIGHUP
    assert after.config is not before.config
    assert sorted(after.refreshers) == ["a", "b"]


def test_an_invalid_file_on_reload_keeps_the_current_config(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    runtime = runtime_at(path, ONE)
    current = runtime.config
    path.write_text("[accounts.a]\n")

    with pytest.raises(ConfigError):
        reloaded(runtime)

    assert runtime.config is current


def test_an_account_the_engines_do_not_hold_as_it_is_gets_a_refresher_of_its_own(
    tmp_path: Path,
) -> None:
    """A worker that picked an account before a reload swapped the engines still refreshes
    that account as it was configured, never another one's refresher."""
    runtime = runtime_at(tmp_path / "config.toml", ONE)
    built = engines(runtime)
    old = replace(runtime.config.accounts["a"], settings=TraktSettings(auth_url="https://x.test"))
    gone = Account(name="gone", client_id="c")

    assert built.refresher(old).account == old
    assert built.refresher(gone).account == gone


def test_building_the_refreshers_builds_no_provider(tmp_path: Path) -> None:
    """Providers (and httpx) are made on the first call that talks to the server."""
    asked: list[tuple[str, str | None]] = []

    def provider(account: Account, secret: str | None) -> ProviderParts:
        asked.append((account.name, secret))
        return ProviderParts()

    path = tmp_path / "config.toml"
    path.write_text(ONE)
    backend = MemoryBackend()
    runtime = Runtime(
        config_file=str(path),
        environ={"HOME": str(tmp_path)},
        err=io.StringIO(),
        store=KeyringStore(StoreSettings(), lambda: backend),
        provider=provider,
    )

    engines(runtime)
    assert asked == []

    runtime.client(runtime.config.accounts["a"])
    assert asked == [("a", "s")]
