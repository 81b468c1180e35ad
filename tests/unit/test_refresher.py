"""The refresh sequence: spend once, store first, keep tokens on failure, remember rejection."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fakes import FakeClock, MemoryBackend, ProviderParts
from tvmaniac_refreshd.config.settings import Account, StoreSettings, TraktSettings
from tvmaniac_refreshd.core.errors import RefreshdError, SessionRejected, TransientError
from tvmaniac_refreshd.core.policy import RefreshPolicy
from tvmaniac_refreshd.core.tokens import TokenDocument, TokenSet
from tvmaniac_refreshd.daemon.refresher import Freshness, Refresher
from tvmaniac_refreshd.storage.keyring_store import KeyringStore
from tvmaniac_refreshd.storage.state import StateFiles, token_digest

START = 1_800_000_000.0
ACCOUNT = Account(
    name="default", client_id="cid", settings=TraktSettings(), refresh=RefreshPolicy(jitter=0)
)


class FakeTrakt(ProviderParts):
    """Rotates tokens like Trakt, or fails as scripted."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.spent: list[str] = []
        self.fail_with: list[Exception] = []
        self.counter = 0

    def refresh(self, refresh_token: str, *, now: float) -> TokenSet:
        self.spent.append(refresh_token)
        if self.fail_with:
            raise self.fail_with.pop(0)
        self.counter += 1
        return TokenSet(
            f"access-{self.counter:04d}-xxxxxxxx",
            f"refresh-{self.counter:04d}-xxxxxxxx",
            int(now),
            604800,
            int(now) + 604800,
        )


def initial(created_at: float) -> TokenDocument:
    return TokenDocument(
        account="default",
        provider="trakt",
        tokens=TokenSet(
            "access-0000-xxxxxxxx",
            "refresh-0000-xxxxxxxx",
            int(created_at),
            604800,
            int(created_at) + 604800,
        ),
        fingerprint=ACCOUNT.fingerprint(),
        obtained_at=int(created_at),
    )


@pytest.fixture
def world(tmp_path: Path) -> tuple[Refresher, FakeTrakt, FakeClock, KeyringStore, StateFiles]:
    clock = FakeClock(START)
    trakt = FakeTrakt(clock)
    memory = MemoryBackend()
    store = KeyringStore(StoreSettings(), lambda: memory)
    states = StateFiles(tmp_path / "state")
    refresher = Refresher(
        ACCOUNT,
        store=store,
        states=states,
        lock_dir=tmp_path / "locks",
        lock_timeout=1,
        client=lambda: trakt,
        clock=clock,
    )
    store.save(initial(START))
    return refresher, trakt, clock, store, states


World = tuple[Refresher, FakeTrakt, FakeClock, KeyringStore, StateFiles]


class TestEnsureFresh:
    def test_fresh_token_sends_nothing(self, world: World) -> None:
        """A token that is not due is handed out without any request."""
        refresher, trakt, _, _, _ = world
        fresh = refresher.ensure_fresh()

        assert (fresh.refreshed, trakt.spent) == (False, [])

    def test_due_token_refreshed_once_and_stored(self, world: World) -> None:
        """At 75 % of the lifetime the token is refreshed, and the keyring has the new pair."""
        refresher, trakt, clock, store, states = world
        clock.advance(0.75 * 604800)
        fresh = refresher.ensure_fresh()

        assert trakt.spent == ["refresh-0000-xxxxxxxx"]
        assert fresh.refreshed
        stored = store.load("default")
        assert stored is not None
        assert stored.tokens.refresh_token == "refresh-0001-xxxxxxxx"
        record = states.load("default")
        assert (record.last_result, record.in_flight_token) == ("refreshed", None)
        assert refresher.ensure_fresh().refreshed is False

    def test_force(self, world: World) -> None:
        """--force refreshes a token that is not due."""
        refresher, trakt, _, _, _ = world

        assert refresher.ensure_fresh(force=True).refreshed
        assert len(trakt.spent) == 1

    def test_transient_failure_keeps_tokens(self, world: World) -> None:
        """A network failure leaves the stored pair as it was, and the next run succeeds."""
        refresher, trakt, clock, store, states = world
        clock.advance(604800)
        trakt.fail_with.append(TransientError("down"))

        with pytest.raises(TransientError):
            refresher.ensure_fresh()
        stored = store.load("default")
        assert stored is not None
        assert stored.tokens.refresh_token == "refresh-0000-xxxxxxxx"
        assert states.load("default").consecutive_failures == 1
        assert refresher.ensure_fresh().refreshed
        assert states.load("default").consecutive_failures == 0

    def test_rejection_stops_requests(self, world: World) -> None:
        """After invalid_grant the account is reauth_required and nothing more is sent."""
        refresher, trakt, clock, store, _ = world
        clock.advance(604800)
        trakt.fail_with.append(SessionRejected("invalid_grant"))

        with pytest.raises(SessionRejected, match="rejected the refresh token"):
            refresher.ensure_fresh()
        with pytest.raises(SessionRejected, match="needs a new login"):
            refresher.ensure_fresh(force=True)
        assert len(trakt.spent) == 1
        assert store.load("default") is not None

    def test_new_login_clears_rejection(self, world: World) -> None:
        """A new token pair (from `login`) is not held back by an old rejection."""
        refresher, trakt, clock, store, _ = world
        clock.advance(604800)
        trakt.fail_with.append(SessionRejected("invalid_grant"))
        with pytest.raises(SessionRejected):
            refresher.ensure_fresh()
        replacement = initial(clock())
        store.save(
            TokenDocument(
                account="default",
                provider="trakt",
                tokens=TokenSet("access-new-xxxxxxx", "refresh-new-xxxxxx", 0, 10, int(clock())),
                fingerprint=replacement.fingerprint,
                obtained_at=int(clock()),
            )
        )

        assert refresher.ensure_fresh().refreshed

    def test_crash_interrupted_refresh_is_named(self, world: World) -> None:
        """A rejection after an interrupted attempt with the same token says a crash caused it."""
        refresher, trakt, clock, _, states = world
        clock.advance(604800)
        trakt.fail_with.append(TransientError("timeout after sending"))
        with pytest.raises(TransientError):
            refresher.ensure_fresh()
        assert states.load("default").in_flight_token is not None
        trakt.fail_with.append(SessionRejected("invalid_grant"))

        with pytest.raises(SessionRejected, match="interrupted"):
            refresher.ensure_fresh()

    def test_other_failures_keep_tokens(self, world: World) -> None:
        """A locked account (423) or an odd status keeps the tokens and is not a rejection."""
        refresher, trakt, clock, store, states = world
        clock.advance(604800)
        trakt.fail_with.append(RefreshdError("HTTP 423 locked"))

        with pytest.raises(RefreshdError, match="423"):
            refresher.ensure_fresh()
        assert store.load("default") is not None
        assert states.load("default").reauth_token is None

    @pytest.mark.parametrize(("failures", "stored_at_once"), [(6, True), (7, False)])
    def test_store_failure_after_rotation_is_retried(
        self, tmp_path: Path, failures: int, stored_at_once: bool
    ) -> None:
        """The new pair is stored even if the keyring fails a few times (it may be restarting);
        a keyring that stays down does not lose it either: it is kept, with the account's lock,
        and stored by the next try, without spending anything again."""
        from tvmaniac_refreshd.core.errors import StoreUnavailable  # noqa: PLC0415
        from tvmaniac_refreshd.storage.locks import account_lock  # noqa: PLC0415

        clock = FakeClock(START)
        trakt = FakeTrakt(clock)
        memory = MemoryBackend()
        store = KeyringStore(StoreSettings(), lambda: memory)
        store.save(initial(START))
        flaky = {"left": failures}
        real_set = memory.set_password

        def set_password(service: str, username: str, password: str) -> None:
            # Fails only once the provider has answered: the write probe before it passes.
            if trakt.spent and flaky["left"]:
                flaky["left"] -= 1
                raise StoreUnavailable("keyring restarting")
            real_set(service, username, password)

        memory.set_password = set_password  # type: ignore[method-assign]
        refresher = Refresher(
            ACCOUNT,
            store=store,
            states=StateFiles(tmp_path / "state"),
            lock_dir=tmp_path / "locks",
            lock_timeout=1,
            client=lambda: trakt,
            clock=clock,
            sleep=clock.sleep,
        )
        if stored_at_once:
            assert refresher.ensure_fresh(force=True).refreshed
        else:
            with pytest.raises(StoreUnavailable, match="keeps them"):
                refresher.ensure_fresh(force=True)
            # Nobody else may spend the old, already spent, token meanwhile.
            with (
                pytest.raises(TransientError),
                account_lock(tmp_path / "locks", "default", timeout=0.01),
            ):
                pass
            assert refresher.ensure_fresh().refreshed  # the kept pair, stored now
        stored = store.load("default")
        assert stored is not None
        assert stored.tokens.refresh_token == "refresh-0001-xxxxxxxx"
        assert trakt.spent == ["refresh-0000-xxxxxxxx"]
        assert sum(clock.sleeps) <= 16
        with account_lock(tmp_path / "locks", "default", timeout=0.01):
            pass  # released once stored

    def test_store_that_cannot_write_spends_nothing(self, world: World) -> None:
        """A store that fails to write before the refresh is found out by the write probe:
        exit 69 with the refresh token unspent, not a spent token and a lost pair."""
        from tvmaniac_refreshd.core.errors import StoreUnavailable  # noqa: PLC0415

        refresher, trakt, _, store, states = world
        memory = store._resolve()
        assert isinstance(memory, MemoryBackend)

        def refuse(service: str, username: str, password: str) -> None:
            raise StoreUnavailable("the keyring is locked")

        memory.set_password = refuse  # type: ignore[method-assign]
        with pytest.raises(StoreUnavailable):
            refresher.ensure_fresh(force=True)
        assert trakt.spent == []
        assert states.load("default").in_flight_token is None

    def test_the_write_probe_is_one_write_and_no_read(self, world: World) -> None:
        """A refresh reads the item twice (before and under the lock), probes with one write,
        and writes the new pair and reads it back: the probe's read-back read the same text
        whether or not its write landed, so it proved nothing and is gone."""
        refresher, trakt, _, store, _ = world
        memory = store._resolve()
        assert isinstance(memory, MemoryBackend)
        calls: list[str] = []
        get, put = memory.get_password, memory.set_password

        def counted_get(service: str, username: str) -> str | None:
            calls.append("get")
            return get(service, username)

        def counted_set(service: str, username: str, password: str) -> None:
            calls.append("set")
            put(service, username, password)

        memory.get_password = counted_get  # type: ignore[method-assign]
        memory.set_password = counted_set  # type: ignore[method-assign]
        refresher.ensure_fresh(force=True)

        assert calls == ["get", "get", "set", "set", "get"]
        assert trakt.spent == ["refresh-0000-xxxxxxxx"]

    def test_a_planned_refresh_reads_the_item_once_under_the_lock(self, world: World) -> None:
        """The daemon knows which token it found due: one read, under the lock, not two."""
        refresher, trakt, _, store, _ = world
        memory = store._resolve()
        assert isinstance(memory, MemoryBackend)
        calls: list[str] = []
        get = memory.get_password

        def counted_get(service: str, username: str) -> str | None:
            calls.append("get")
            return get(service, username)

        memory.get_password = counted_get  # type: ignore[method-assign]
        fresh = refresher.ensure_fresh(planned=token_digest("refresh-0000-xxxxxxxx"), force=True)

        assert fresh.how is Freshness.REFRESHED
        assert calls == ["get", "get"]  # under the lock, and the new pair's read-back
        assert trakt.spent == ["refresh-0000-xxxxxxxx"]

    def test_a_planned_refresh_of_a_token_replaced_since_spends_nothing(self, world: World) -> None:
        refresher, trakt, _, _, _ = world

        fresh = refresher.ensure_fresh(planned=token_digest("refresh-of-another-run"), force=True)

        assert fresh.how is Freshness.BY_OTHER
        assert trakt.spent == []

    def test_not_logged_in(self, world: World) -> None:
        """No stored tokens is a rejection telling the user to log in."""
        refresher, _, _, store, _ = world
        store.delete("default")

        with pytest.raises(SessionRejected, match="not logged in"):
            refresher.ensure_fresh()

    def test_config_points_elsewhere(self, world: World, tmp_path: Path) -> None:
        """Tokens from another client or host are never sent to the configured one."""
        _, trakt, clock, store, states = world
        moved = Account(
            name="default",
            client_id="cid",
            settings=TraktSettings(auth_url="https://other.example"),
        )
        refresher = Refresher(
            moved,
            store=store,
            states=states,
            lock_dir=tmp_path / "locks",
            lock_timeout=1,
            client=lambda: trakt,
            clock=clock,
        )

        with pytest.raises(SessionRejected, match="was made for another client or endpoint"):
            refresher.ensure_fresh(force=True)
        assert trakt.spent == []
