"""The macOS Keychain through keyring's real macOS backend, over a fake Security.framework
(tests/support/fake_keychain.py): statuses get macOS advice, and a write that keyring does as
delete + add loses nothing when the process is killed at any point of it."""

from __future__ import annotations

import copy
import ctypes
import dataclasses
import importlib
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import FakeClock
from tests.support.fake_keychain import (
    CLI,
    DENY,
    ERR_AUTH_FAILED,
    ERR_INTERACTION_NOT_ALLOWED,
    ERR_USER_CANCELED,
    NO_UI,
    FakeKeychain,
    Killed,
    bind,
    macos_keyring,
)
from tests.unit.test_refresher import ACCOUNT, START, FakeTrakt, initial
from tvmaniac_refreshd.config.settings import StoreSettings
from tvmaniac_refreshd.core.errors import EXIT_STORE_UNAVAILABLE, StoreUnavailable
from tvmaniac_refreshd.core.tokens import TokenDocument, TokenSet
from tvmaniac_refreshd.daemon.refresher import Refresher
from tvmaniac_refreshd.storage.keyring_store import SERVICE, KeyringStore, default_backend
from tvmaniac_refreshd.storage.state import StateFiles
from tvmaniac_refreshd.storage.two_phase import PENDING_SUFFIX, TwoPhaseWrites

LINUX_WORDS = ("secret-tool", "seahorse", "systemctl", "timedatectl", "gnome-keyring", "D-Bus")


def document(generation: int) -> TokenDocument:
    return TokenDocument(
        account="default",
        provider="trakt",
        tokens=TokenSet(f"access-{generation}", f"refresh-{generation}", generation, 604800, 0),
        fingerprint="sha256:x",
        obtained_at=generation,
    )


OLD, NEW, NEWER = document(1), document(2), document(3)


@pytest.fixture
def keyring_class() -> Iterator[Any]:
    keychain = FakeKeychain()
    with macos_keyring(keychain) as cls:
        cls.test_keychain = keychain
        yield cls


def store_on(keyring_class: Any, keychain: FakeKeychain) -> KeyringStore:
    """A store as a new process would open it: keyring's macOS backend over ``keychain``."""
    with_fake = keyring_class.__new__(keyring_class)
    keyring_class.__init__(with_fake)
    return KeyringStore(StoreSettings(timeout=5), lambda: _bound(with_fake, keychain))


def _bound(backend: Any, keychain: FakeKeychain) -> Any:
    # The fake api module is shared; point it at this test's keychain.
    macos: Any = importlib.import_module("keyring.backends.macOS")

    bind(macos.api, keychain)
    return backend


class TestStatuses:
    def test_the_backend_is_keyrings_own_and_wrapped(self, keyring_class: Any) -> None:
        """The real macOS backend, made safe by two-phase writes (it is not atomic)."""
        store = store_on(keyring_class, FakeKeychain())

        assert store.backend_name() == "keyring.backends.macOS.Keyring"
        assert isinstance(store._resolve(), TwoPhaseWrites)

    def test_round_trip_leaves_one_item(self, keyring_class: Any) -> None:
        keychain = FakeKeychain()
        store = store_on(keyring_class, keychain)

        store.save(OLD)
        store.save(NEW)

        assert store.load("default") == NEW
        assert set(keychain.items) == {(SERVICE, "default")}
        assert store.delete("default") is True
        assert keychain.items == {}
        assert store.load("default") is None  # -25300 on a read is "none", not an error
        assert store.delete("default") is False

    @pytest.mark.parametrize(
        ("status", "words"),
        [
            (ERR_INTERACTION_NOT_ALLOWED, ("-25308", "security unlock-keychain", "Always Allow")),
            (ERR_USER_CANCELED, ("-128", "Always Allow", "Access Control")),
            (ERR_AUTH_FAILED, ("-25293", "Access Control", "Python upgrade")),
            (-50, ("status -50", "security error -50")),
        ],
    )
    @pytest.mark.parametrize("operation", ["load", "save", "delete"])
    def test_each_status_gets_macos_advice(
        self, keyring_class: Any, status: int, words: tuple[str, ...], operation: str
    ) -> None:
        """Each Keychain status: its own message, exit 69, no Linux advice (item 7)."""
        keychain = FakeKeychain()
        store = store_on(keyring_class, keychain)
        store.save(OLD)
        keychain.fail_with = status

        act: Callable[[], object] = {
            "load": lambda: store.load("default"),
            "save": lambda: store.save(NEW),
            "delete": lambda: store.delete("default"),
        }[operation]
        with pytest.raises(StoreUnavailable) as caught:
            act()

        message = str(caught.value)
        assert caught.value.exit_code == EXIT_STORE_UNAVAILABLE
        for word in words:
            assert word in message
        for word in LINUX_WORDS:
            assert word not in message
        keychain.fail_with = None
        assert store_on(keyring_class, keychain).load("default") == OLD  # nothing was lost


def _save_killed_after(
    keyring_class: Any,
    keychain: FakeKeychain,
    calls: int,
    doc: TokenDocument,
) -> None:
    """Run the refresher's store step (``store.save``), killing the process after ``calls``."""
    keychain.calls.clear()
    keychain.kill_after = calls
    with pytest.raises(Killed):
        store_on(keyring_class, keychain).save(doc)
    keychain.kill_after = None
    keychain.calls.clear()


def _calls_of_a_save(keyring_class: Any, before: FakeKeychain, doc: TokenDocument) -> list[str]:
    keychain = copy.deepcopy(before)
    keychain.calls.clear()
    store_on(keyring_class, keychain).save(doc)
    return list(keychain.calls)


class TestKilledWrites:
    def test_a_kill_at_every_point_of_the_store_step(self, keyring_class: Any) -> None:
        """Killed after each SecItem call: the new pair, or (only before its first add has
        landed: the irreducible window) the old one; never nothing (item 6)."""
        start = FakeKeychain()
        store_on(keyring_class, start).save(OLD)
        calls = _calls_of_a_save(keyring_class, start, NEW)
        first_add = calls.index("SecItemAdd") + 1  # the new pair is durable from here on
        assert "SecItemDelete" in calls[first_add:]  # keyring's replace is delete, then add

        outcomes = []
        for point in range(len(calls)):
            keychain = copy.deepcopy(start)
            _save_killed_after(keyring_class, keychain, point, NEW)
            loaded = store_on(keyring_class, keychain).load("default")
            outcomes.append(loaded)
            assert loaded is not None, f"killed after call {point}: nothing stored"
            expected = OLD if point < first_add else NEW
            assert loaded == expected, f"killed after call {point} of {calls}"
        assert outcomes.count(NEW) >= len(calls) - first_add

    def test_a_second_kill_after_a_first(self, keyring_class: Any) -> None:
        """A write killed mid-replace, then the next write killed at every point: the newest
        durable pair is always there (the leftover is finished first, never deleted blind)."""
        start = FakeKeychain()
        store_on(keyring_class, start).save(OLD)
        calls = _calls_of_a_save(keyring_class, start, NEW)
        # Killed between keyring's delete and add of the main item: only the pending copy is left.
        mid_replace = calls.index("SecItemDelete", calls.index("SecItemAdd")) + 1
        _save_killed_after(keyring_class, start, mid_replace, NEW)
        assert (SERVICE, "default") not in start.items
        assert (SERVICE, "default" + PENDING_SUFFIX) in start.items
        assert store_on(keyring_class, start).load("default") == NEW

        second = _calls_of_a_save(keyring_class, start, NEWER)
        durable = [i for i, call in enumerate(second) if call == "SecItemAdd"][1] + 1
        for point in range(len(second)):
            keychain = copy.deepcopy(start)
            _save_killed_after(keyring_class, keychain, point, NEWER)
            loaded = store_on(keyring_class, keychain).load("default")
            assert loaded == (NEW if point < durable else NEWER), f"killed after call {point}"

    def test_a_concurrent_reader_never_sees_nothing(self, keyring_class: Any) -> None:
        """A `token` reading between any two calls of a write finds a pair (item 6)."""
        keychain = FakeKeychain()
        store_on(keyring_class, keychain).save(OLD)
        reader = store_on(keyring_class, keychain)
        seen: list[TokenDocument | None] = []
        original = {name: getattr(keychain, name) for name in ("add", "delete")}
        reading = [False]

        def after(name: str) -> Any:
            def call(*args: Any) -> int:
                status: int = original[name](*args)
                if not reading[0]:
                    reading[0] = True
                    try:
                        seen.append(reader.load("default"))
                    finally:
                        reading[0] = False
                return status

            return call

        for name in original:
            setattr(keychain, name, after(name))
        store_on(keyring_class, keychain).save(NEW)

        assert seen
        assert None not in seen
        assert seen[-1] == NEW


class TestRefresherKilledWhileStoring:
    def _refresh(
        self,
        keyring_class: Any,
        keychain: FakeKeychain,
        tmp_path: Path,
        kill_after: int | None,
    ) -> tuple[FakeTrakt, list[str]]:
        """Run a forced refresh; the process dies ``kill_after`` Keychain calls after the
        provider has answered (that is, inside the store step). Return the provider and the
        Keychain calls of the store step."""
        clock = FakeClock(START)
        trakt = FakeTrakt(clock)
        answer = trakt.refresh
        store_calls: list[str] = []

        def refresh_then_arm(refresh_token: str, *, now: float) -> TokenSet:
            tokens = answer(refresh_token, now=now)
            keychain.calls.clear()
            keychain.kill_after = kill_after
            return tokens

        trakt.refresh = refresh_then_arm  # type: ignore[method-assign]
        refresher = Refresher(
            ACCOUNT,
            store=store_on(keyring_class, keychain),
            states=StateFiles(tmp_path / "state"),
            lock_dir=tmp_path / "locks",
            lock_timeout=1,
            client=lambda: trakt,
            clock=clock,
        )
        if kill_after is None:
            refresher.ensure_fresh(force=True)
            store_calls = list(keychain.calls)
        else:
            with pytest.raises(Killed):
                refresher.ensure_fresh(force=True)
        keychain.kill_after = None
        return trakt, store_calls

    def test_the_refreshers_store_step_killed_at_every_point(
        self, keyring_class: Any, tmp_path: Path
    ) -> None:
        """The real refresher, killed after each Keychain call of its store step: the next
        process finds the rotated pair, except before its first add has landed (item 6)."""
        start = FakeKeychain()
        store_on(keyring_class, start).save(initial(START))
        probe = copy.deepcopy(start)
        _, calls = self._refresh(keyring_class, probe, tmp_path / "probe", None)
        assert calls, "the store step made no Keychain call"
        durable = calls.index("SecItemAdd") + 1

        for point in range(len(calls)):
            keychain = copy.deepcopy(start)
            trakt, _ = self._refresh(keyring_class, keychain, tmp_path / str(point), point)
            loaded = store_on(keyring_class, keychain).load("default")
            assert loaded is not None, f"killed after store call {point}: nothing stored"
            assert trakt.spent == ["refresh-0000-xxxxxxxx"]
            expected = "refresh-0000-xxxxxxxx" if point < durable else "refresh-0001-xxxxxxxx"
            assert loaded.tokens.refresh_token == expected, f"killed after {calls[:point]}"


def test_documents_differ() -> None:
    """The checks above can fail: the three generations are told apart."""
    assert len({dataclasses.astuple(doc) for doc in (OLD, NEW, NEWER)}) == 3


AGENT = "/Users/me/.local/pipx/venvs/tvmaniac-refreshd/bin/python (Python 3.13, ad hoc)"


def default_store(keychain: FakeKeychain) -> KeyringStore:
    """The store a Mac opens by default (no backend chosen), over the fake Security calls."""

    def backend() -> Any:
        macos: Any = importlib.import_module("keyring.backends.macOS")
        bind(macos.api, keychain)
        return default_backend({}, "darwin")

    return KeyringStore(StoreSettings(timeout=5), backend)


class TestInPlaceWrites:
    """The default macOS backend updates items in place (issue 27 finding 2)."""

    def test_a_write_by_one_program_keeps_the_others_grant(self, keyring_class: Any) -> None:
        """The CLI logs in; the agent (another Python) is allowed once and refreshes; the CLI
        then reads without a prompt. keyring's delete + add would make a new item trusting
        only the agent: the CLI's prompt would return at every refresh."""
        keychain = FakeKeychain()
        default_store(keychain).save(OLD)  # `login` in Terminal
        keychain.binary = AGENT
        agent = default_store(keychain)
        assert agent.load("default") == OLD  # its first read asks once: Always Allow
        assert keychain.prompts == [(AGENT, (SERVICE, "default"))]

        keychain.calls.clear()
        agent.save(NEW)  # the agent's refresh
        keychain.binary = CLI
        assert default_store(keychain).load("default") == NEW  # `token` in Terminal

        assert keychain.lost_grants == []
        assert keychain.prompts == [(AGENT, (SERVICE, "default"))]  # no second prompt
        assert keychain.trusted[(SERVICE, "default")] == {CLI, AGENT}
        assert set(keychain.items) == {(SERVICE, "default")}

    def test_the_backend_is_atomic_without_pending_items(self, keyring_class: Any) -> None:
        keychain = FakeKeychain()
        store = default_store(keychain)

        assert store.backend_name() == "tvmaniac_refreshd.storage.macos_keychain.Keychain"
        assert not isinstance(store._resolve(), TwoPhaseWrites)
        store.save(OLD)
        keychain.calls.clear()
        store.save(NEW)
        # One update and the read-back: no delete, no `:pending` item.
        assert keychain.calls == ["SecItemUpdate", "SecItemCopyMatching"]
        assert set(keychain.items) == {(SERVICE, "default")}

    @pytest.mark.parametrize("before", [None, OLD])
    def test_a_kill_at_every_point_leaves_the_old_or_the_new_pair(
        self, keyring_class: Any, before: TokenDocument | None
    ) -> None:
        start = FakeKeychain()
        if before is not None:
            default_store(start).save(before)
        probe = copy.deepcopy(start)
        probe.calls.clear()
        default_store(probe).save(NEW)
        calls = list(probe.calls)
        durable = 1  # the first call (update, or add of a new item) is the whole write
        if before is None:
            durable = calls.index("SecItemAdd") + 1

        for point in range(len(calls)):
            keychain = copy.deepcopy(start)
            keychain.calls.clear()
            keychain.kill_after = point
            with pytest.raises(Killed):
                default_store(keychain).save(NEW)
            keychain.kill_after = None
            loaded = default_store(keychain).load("default")
            assert loaded == (before if point < durable else NEW), f"killed after {calls[:point]}"

    def test_an_item_added_by_another_process_meanwhile_is_updated(
        self, keyring_class: Any
    ) -> None:
        """Two first writes race: the loser's add answers -25299, and it updates instead."""
        keychain = FakeKeychain()
        update = keychain.update
        raced = [False]

        def update_then_race(query: dict[str, Any], attributes: dict[str, Any]) -> int:
            status = update(query, attributes)
            if not raced[0]:
                raced[0] = True
                keychain.items[(SERVICE, "default")] = "written by the other process"
                keychain.trusted[(SERVICE, "default")] = {CLI}
            return status

        keychain.update = update_then_race  # type: ignore[method-assign]
        store = default_store(keychain)
        store.save(OLD)

        assert store.load("default") == OLD
        assert keychain.calls[:3] == ["SecItemUpdate", "SecItemAdd", "SecItemUpdate"]

    @pytest.mark.parametrize(
        ("answer", "words"),
        [(DENY, ("-128", "Always Allow", AGENT)), (NO_UI, ("-25308", "security unlock-keychain"))],
    )
    def test_a_refused_update_loses_nothing(
        self,
        keyring_class: Any,
        monkeypatch: pytest.MonkeyPatch,
        answer: str,
        words: tuple[str, ...],
    ) -> None:
        keychain = FakeKeychain()
        default_store(keychain).save(OLD)
        keychain.binary, keychain.answer = AGENT, answer
        monkeypatch.setattr(
            "tvmaniac_refreshd.storage.macos_keychain.running_executable", lambda: AGENT
        )

        with pytest.raises(StoreUnavailable) as caught:
            default_store(keychain).save(NEW)

        for word in words:
            assert word in str(caught.value)
        assert caught.value.exit_code == EXIT_STORE_UNAVAILABLE
        keychain.binary = CLI
        assert default_store(keychain).load("default") == OLD


@pytest.fixture
def macos_keychain() -> Any:
    # Imported here, so that the rest of this file runs (and fails) on code without it.
    return importlib.import_module("tvmaniac_refreshd.storage.macos_keychain")


class TestAdvice:
    """Findings 3 and 9: the program the Keychain names, and the order of the advice."""

    def test_the_access_list_advice_names_the_real_executable(self, macos_keychain: Any) -> None:
        framework = (
            "/opt/homebrew/Cellar/python@3.13/3.13.1/Frameworks/Python.framework/Versions/3.13/"
            "Resources/Python.app/Contents/MacOS/Python"
        )
        for status in (-128, -25293):
            advice = macos_keychain.keychain_advice(status, executable=lambda: framework)
            assert framework in advice
            assert "codesign" not in advice

    def test_proc_pidpath_is_asked_on_macos(self, macos_keychain: Any) -> None:
        path = b"/Library/Frameworks/Python.framework/Versions/3.13/Resources/Python.app/x"
        asked: list[int] = []

        class Libproc:
            def proc_pidpath(self, pid: int, buffer: Any, size: int) -> int:
                asked.append(pid)
                ctypes.memmove(buffer, path, len(path))
                return len(path)

        found = macos_keychain.running_executable("darwin", lambda _name: Libproc())

        assert found == path.decode()
        assert asked == [os.getpid()]
        assert macos_keychain.running_executable("linux") == os.path.realpath(sys.executable)

    def test_auth_failed_says_lock_and_unlock_first(self, macos_keychain: Any) -> None:
        advice = macos_keychain.keychain_advice(-25293, executable=lambda: "/x")
        assert advice.index("lock and unlock the login keychain") < advice.index("access list")
        assert "restart" in advice

    def test_no_codesign_advice(self, macos_keychain: Any) -> None:
        """Re-signing changes the cdhash, and the next upgrade undoes it (finding 3)."""
        for status in (-25308, -128, -25293, -67030, -25300, -50):
            assert "codesign" not in macos_keychain.keychain_advice(status, lambda: "/x")
