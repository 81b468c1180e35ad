"""Waiting for the network (issue 29): a due refresh is held while offline, without a failure,
and runs as soon as the network is back; a resume re-plans at once; no tick with both sources.

Driven like test_daemon: a fake planner and clock, and a NetworkState set by hand (the event
sources themselves are tested against a private system bus and a real netlink socket in
tests/integration/test_events.py).
"""

from __future__ import annotations

import os
import struct
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.unit.test_daemon import JOB, FakePlanner, World
from tvmaniac_refreshd.cli.status import account_report, render_text
from tvmaniac_refreshd.core.errors import TransientError
from tvmaniac_refreshd.core.policy import retry_delay
from tvmaniac_refreshd.daemon import net_netlink
from tvmaniac_refreshd.daemon.decisions import Condition
from tvmaniac_refreshd.daemon.events import Sources
from tvmaniac_refreshd.daemon.net_fallback import Candidate, NetworkChain
from tvmaniac_refreshd.daemon.network import NetworkState
from tvmaniac_refreshd.daemon.runner import _schedule_ticks
from tvmaniac_refreshd.daemon.scheduler import Scheduler
from tvmaniac_refreshd.daemon.system_bus import BusUnavailable


@pytest.fixture
def offline(tmp_path: Path) -> World:
    world = World(tmp_path)
    world.daemon.network = NetworkState("test", online=False)
    world.daemon.plan_all()
    return world


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def go_online(world: World) -> None:
    world.daemon.network.set(True)
    world.daemon.network_returned()


class TestWaitingForTheNetwork:
    def test_a_due_refresh_sends_nothing_while_offline(self, offline: World) -> None:
        offline.advance_to(offline.due())

        assert offline.trakt.spent == []
        watch = offline.daemon.watches["default"]
        assert watch.condition is Condition.WAITING_FOR_NETWORK
        assert watch.attempts == 0
        assert JOB not in offline.planner.jobs  # nothing wakes the daemon until the network

    def test_it_shows_in_status_line_state_file_and_status(self, offline: World) -> None:
        offline.advance_to(offline.due())

        assert offline.daemon.status_line() == "default: waiting for the network"
        record = offline.states.load("default")
        assert record.waiting_for_network_since == int(offline.clock())
        assert record.next_attempt_at is None
        report = account_report(
            offline.account,  # type: ignore[arg-type]
            offline.store.load("default"),
            record,
            now=offline.clock(),
        )
        assert report.waiting_for == "network"
        assert report.waiting_for_source == "test"  # the source that said offline
        assert "waiting for the network (offline, as test says)" in render_text(
            [report], now=offline.clock()
        )

    def test_it_runs_at_once_when_the_network_is_back(self, offline: World) -> None:
        offline.advance_to(offline.due())
        go_online(offline)

        assert offline.planned() == offline.clock()  # now, not at the next tick
        offline.planner.run_due(offline.clock())
        assert offline.trakt.spent == ["refresh-0000-xxxxxxxx"]
        assert offline.daemon.watches["default"].condition is Condition.SCHEDULED
        assert offline.states.load("default").waiting_for_network_since is None

    def test_the_backoff_does_not_grow_while_offline(self, offline: World) -> None:
        offline.daemon.network.set(True)
        offline.trakt.fail_with = [TransientError("unreachable"), TransientError("unreachable")]
        offline.advance_to(offline.due())
        assert offline.daemon.watches["default"].attempts == 1
        offline.daemon.network.set(False)
        retry = offline.planned()
        assert retry is not None
        for step in range(5):  # the retry falls due, and the daemon wakes, while offline
            offline.advance_to(retry + step * 3600)
        assert offline.daemon.watches["default"].attempts == 1
        assert len(offline.trakt.spent) == 1

        go_online(offline)
        offline.planner.run_due(offline.clock())

        # The second failure is attempt 2: its delay is the second step, not the sixth.
        watch = offline.daemon.watches["default"]
        assert watch.attempts == 2
        retry_policy = offline.daemon.config.accounts["default"].retry
        assert offline.planned() == offline.clock() + retry_delay(
            2, retry_policy, retry_after=None, share=0.0
        )

    def test_unreachable_while_online_still_backs_off(self, tmp_path: Path) -> None:
        world = World(tmp_path)
        world.daemon.network = NetworkState("test", online=True)
        world.daemon.plan_all()
        world.trakt.fail_with = [TransientError("unreachable")]

        world.advance_to(world.due())

        watch = world.daemon.watches["default"]
        assert (watch.condition, watch.attempts) == (Condition.RETRYING, 1)

    def test_not_due_while_offline_is_planned_as_usual(self, offline: World) -> None:
        due = offline.due()
        offline.daemon.run_account("default")  # early (a CLI change, a resume)

        assert offline.planned() == due
        assert offline.daemon.watches["default"].condition is Condition.SCHEDULED

    def test_back_while_deciding_is_not_lost(self, offline: World) -> None:
        """The source says online after the job read offline but before it recorded it."""
        original = offline.daemon._wait_for_network

        def back_in_between(*args: object) -> None:
            offline.daemon.network.set(True)
            offline.daemon.network_returned()  # sees no waiting account yet
            original(*args)  # type: ignore[arg-type]

        offline.daemon._wait_for_network = back_in_between  # type: ignore[method-assign,assignment]
        offline.advance_to(offline.due())

        assert offline.planned() == offline.clock()

    def test_a_resume_replans_at_once(self, world: World) -> None:
        world.daemon.plan_all()
        world.trakt.fail_with = []
        world.clock.advance(world.due() - world.clock() + 60)  # slept past the due time
        world.daemon.resumed()

        assert world.planned() == world.due()  # in the past: runs at once
        world.planner.run_due(world.clock())
        assert world.trakt.spent == ["refresh-0000-xxxxxxxx"]


class TestNetworkState:
    def test_listeners_hear_changes_not_repeats(self) -> None:
        state = NetworkState("test", online=True)
        heard: list[bool] = []
        cancel = state.subscribe(heard.append)
        state.set(True)
        state.set(False)
        state.set(False)
        state.set(True)
        cancel()
        state.set(False)
        assert heard == [False, True]

    def test_wait_online(self) -> None:
        state = NetworkState("test", online=False)
        assert state.wait_online(0) is False
        threading.Thread(target=state.set, args=(True,)).start()
        assert state.wait_online(60) is True

    def test_no_source_is_always_online(self) -> None:
        assert NetworkState().online is True
        assert Sources(NetworkState()).complete is False


class PingCounter:
    def __init__(self) -> None:
        self.pings = 0

    def watchdog(self) -> None:
        self.pings += 1


class TestNoTickWithEvents:
    def _jobs(self, world: World, *, events: bool, watchdog: bool) -> dict[str, float]:
        planner = FakePlanner()
        environ = {"WATCHDOG_USEC": "7200000000", "WATCHDOG_PID": str(os.getpid())}
        _schedule_ticks(
            planner,  # type: ignore[arg-type]
            world.daemon,
            notifier=PingCounter(),  # type: ignore[arg-type]
            config=world.daemon.config,
            environ=environ if watchdog else {},
            events=events,
        )
        return planner.periodic

    def test_both_sources_drop_the_tick_and_keep_the_watchdog(self, world: World) -> None:
        jobs = self._jobs(world, events=True, watchdog=True)
        assert "tick" not in jobs
        assert jobs["watchdog"] == 3600

    def test_without_sources_the_tick_stays(self, world: World) -> None:
        assert "tick" in self._jobs(world, events=False, watchdog=False)


def route(dst_len: int, table: int = 254, kind: int = 1, flags: int = 0) -> bytes:
    return struct.pack("=BBBBBBBBI", 2, dst_len, 0, 0, table, 3, 0, kind, flags)


class TestNetlinkParsing:
    def test_a_default_route(self) -> None:
        assert net_netlink.is_default_route(route(0))

    def test_not_a_default_route(self) -> None:
        assert not net_netlink.is_default_route(route(24))
        assert not net_netlink.is_default_route(route(0, table=255))  # local table
        assert not net_netlink.is_default_route(route(0, kind=7))  # unreachable
        assert not net_netlink.is_default_route(route(0, flags=net_netlink.RTNH_F_LINKDOWN))
        assert not net_netlink.is_default_route(b"\x02")


class TestTheIdleRecheck:
    """Issue 29: the 5-hour safety check costs the idle daemon one wake-up, not seven to eleven.

    It runs on the scheduler's thread, reads no keyring and re-adds no job whose plan stands;
    what no longer stands is re-planned from the keyring on the pool."""

    def _check(self, world: World) -> tuple[object, bool]:
        environ = {"WATCHDOG_USEC": "7200000000", "WATCHDOG_PID": str(os.getpid())}
        _schedule_ticks(
            world.planner,  # type: ignore[arg-type]
            world.daemon,
            notifier=PingCounter(),  # type: ignore[arg-type]
            config=world.daemon.config,
            environ=environ,
            events=True,
        )
        return world.planner.periodic_runs["check"]

    def test_a_standing_plan_costs_no_keyring_read_and_no_job(self, world: World) -> None:
        world.daemon.plan_all()
        check, inline = self._check(world)
        reads, jobs = world.backend.calls, dict(world.planner.jobs)

        check()  # type: ignore[operator]

        assert inline
        assert world.backend.calls == reads
        assert world.planner.jobs == jobs

    def test_a_state_file_the_cli_changed_is_replanned_from_the_keyring(self, world: World) -> None:
        world.daemon.plan_all()
        check, _ = self._check(world)
        path = world.states._path("default")
        stat = path.stat()
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
        reads = world.backend.calls

        check()  # type: ignore[operator]
        assert "recheck" in world.planner.jobs
        world.planner.jobs.pop(JOB)
        world.planner.run_due(world.clock())

        assert world.backend.calls > reads
        assert world.planned() == world.due()

    def test_an_account_whose_job_is_gone_gets_its_plan_back(self, world: World) -> None:
        """A job that fired (and left the scheduler) while its account kept the old plan must
        not stay without one: the check sees the scheduler, not only the account's record."""
        world.daemon.plan_all()
        check, _ = self._check(world)
        world.planner.jobs.pop(JOB)

        check()  # type: ignore[operator]
        world.planner.run_due(world.clock())

        assert world.planned() == world.due()

    def test_a_refresh_waiting_for_a_job_is_left_to_its_own_look_again(self, world: World) -> None:
        """Issue 30's wait for a job has no due time but a job of its own: it stands."""
        world.daemon.plan_all()
        check, _ = self._check(world)
        watch = world.daemon.watches["default"]
        watch.condition, watch.next_at = Condition.WAITING_FOR_JOB, None
        world.planner.at(JOB, world.clock() + 60, lambda: None)
        jobs = dict(world.planner.jobs)

        check()  # type: ignore[operator]

        assert world.planner.jobs == jobs

    def test_a_wait_for_a_network_that_is_back_is_ended(self, tmp_path: Path) -> None:
        world = World(tmp_path)
        network = NetworkState("test", online=False)
        world.daemon.network = network
        world.daemon.plan_all()
        world.advance_to(world.due())
        assert world.daemon.watches["default"].condition is Condition.WAITING_FOR_NETWORK
        check, _ = self._check(world)
        network._online = True  # the change was missed (no listener called)

        check()  # type: ignore[operator]
        world.planner.run_due(world.clock())

        assert world.daemon.watches["default"].condition is not Condition.WAITING_FOR_NETWORK


class TestPeriodsThatCoincide:
    def test_the_recheck_and_the_ping_fall_due_at_the_same_instant(self) -> None:
        """Two periodic jobs added a few microseconds apart must not wake the idle daemon twice
        every 5 hours: both count their periods from the scheduler's own start."""
        scheduler = Scheduler(max_workers=1)
        scheduler.every("watchdog", 3600, lambda: None, inline=True)
        scheduler.every("check", 18000, lambda: None, inline=True)
        scheduler.start()
        try:
            ping, check = scheduler.planned("watchdog"), scheduler.planned("check")
        finally:
            scheduler.shutdown()
        assert ping is not None
        assert check is not None
        assert check - ping == 14400  # the fifth ping and the first check: the same instant


class FakeSource:
    """A network source for NetworkChain: there or not, and its own state."""

    def __init__(self, name: str, *, there: bool = True, online: bool = True) -> None:
        self.name, self.there = name, there
        self.state = NetworkState(name, online=online)
        self.presence: Callable[[bool], object] = lambda _present: None
        self.starts = self.closes = 0

    def start(
        self, presence: Callable[[bool], object]
    ) -> tuple[NetworkState, Callable[[], object]]:
        if not self.there:
            raise BusUnavailable(f"{self.name} is not running")
        self.starts += 1
        self.presence = presence
        return self.state, self.close

    def close(self) -> None:
        self.closes += 1

    def candidate(self) -> Candidate:
        return Candidate(self.name, self.start)


class TestNetworkChain:
    def test_the_first_there_is_followed_and_the_rest_not_started(self) -> None:
        nm, networkd = FakeSource("nm", there=False), FakeSource("networkd", online=False)
        netlink = FakeSource("netlink")
        chain = NetworkChain([nm.candidate(), networkd.candidate(), netlink.candidate()])
        assert (chain.network.source, chain.network.online) == ("networkd", False)
        assert netlink.starts == 0

    def test_a_source_leaving_hands_over_and_its_return_takes_back(self) -> None:
        nm, netlink = FakeSource("nm", online=False), FakeSource("netlink", online=True)
        chain = NetworkChain([nm.candidate(), netlink.candidate()])
        heard: list[bool] = []
        chain.network.subscribe(heard.append)

        nm.presence(False)
        assert (chain.network.source, chain.network.online) == ("netlink", True)
        netlink.state.set(False)
        nm.state.set(True)  # a source not followed changes nothing
        assert chain.network.online is False

        nm.presence(True)
        assert (chain.network.source, chain.network.online) == ("nm", True)
        assert netlink.closes == 1
        netlink.state.set(True)
        nm.state.set(False)
        assert chain.network.online is False
        assert heard == [True, False, True, False]

    def test_with_nothing_left_the_network_counts_as_there(self) -> None:
        nm = FakeSource("nm", online=False)
        chain = NetworkChain([nm.candidate()])
        nm.presence(False)
        assert (chain.network.source, chain.network.online) == ("none", True)
        nm.presence(True)
        assert (chain.network.source, chain.network.online) == ("nm", False)

    def test_close_closes_every_started_source(self) -> None:
        nm, netlink = FakeSource("nm"), FakeSource("netlink")
        chain = NetworkChain([nm.candidate(), netlink.candidate()])
        nm.presence(False)
        chain.close()
        assert (nm.closes, netlink.closes) == (1, 1)
        nm.presence(True)  # a late owner change after close starts nothing
        assert netlink.starts == 1
