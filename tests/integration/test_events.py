"""The event sources for real (issue 29): the kernel's routes in network namespaces of our own,
NetworkManager, networkd and logind as faithful fakes on a private system bus, and the daemon
holding a due refresh while its link is down and running it once the link is back.

Namespaces, veth names and addresses are random and private (tests/support/netns.py); no
packet leaves them. Every wait is a bounded poll for a state, never a sleep.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import netns
from tests.support.harness import CLIENT_ID, CLIENT_SECRET, Harness, wait_until
from tests.support.system_bus import PrivateSystemBus, private_system_bus
from trakt_emulator import Emulator
from tvmaniac_refreshd.daemon import events, net_netlink, resume_logind
from tvmaniac_refreshd.daemon.network import NetworkState

NO_BUS = {"DBUS_SYSTEM_BUS_ADDRESS": "unix:path=/nonexistent/tvm-no-system-bus"}
BOUND = 60.0  # seconds: a generous bound for a state to be reached on a busy machine

needs_netns = pytest.mark.skipif(netns.available() is not None, reason=str(netns.available()))


@pytest.fixture
def link() -> Iterator[netns.Link]:
    made = netns.Link()
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def bus() -> Iterator[PrivateSystemBus]:
    with private_system_bus() as running:
        yield running


# -- netlink, for real -------------------------------------------------------------------------


@needs_netns
def test_netlink_follows_the_default_route(link: netns.Link) -> None:
    with netns.inside(link.client):  # the watch's sockets and thread live in the namespace
        watch = net_netlink.NetlinkWatch()
    try:
        heard: list[bool] = []
        watch.network.subscribe(heard.append)
        assert watch.network.online is True

        link.down()
        wait_until(lambda: not watch.network.online, timeout=BOUND, what="offline on link down")
        link.up()
        wait_until(lambda: watch.network.online, timeout=BOUND, what="online on link up")
        assert heard == [False, True]
    finally:
        watch.close()


@needs_netns
def test_no_default_route_is_offline(link: netns.Link) -> None:
    subprocess.run(["ip", "-n", link.client, "route", "del", "default"], check=True)
    with netns.inside(link.client):
        assert net_netlink.has_default_route() is False
        watch = net_netlink.NetlinkWatch()
    try:
        assert watch.network.online is False
    finally:
        watch.close()


# -- NetworkManager, networkd, logind on a private system bus ---------------------------------


def test_networkmanager_is_preferred_and_followed(bus: PrivateSystemBus) -> None:
    manager = bus.start("NetworkManager")
    bus.start("networkd")
    bus.start("logind")
    sources = events.start(bus.env, on_resume=lambda: None)
    try:
        assert sources.describe() == (
            "network: NetworkManager; resume: logind;"
            " clock steps: none (a step is noticed at the next wake-up)"
        )
        assert sources.complete
        network = sources.network
        assert network.online
        manager.send("state 20")  # NM_STATE_DISCONNECTED
        wait_until(lambda: not network.online, timeout=BOUND, what="offline")
        manager.send("state 60")  # CONNECTED_SITE: a default route, no connectivity check
        wait_until(lambda: network.online, timeout=BOUND, what="online")
    finally:
        sources.close()


def test_networkmanager_leaving_hands_over_to_networkd_and_back(bus: PrivateSystemBus) -> None:
    """A stopped NetworkManager must neither hold refreshes for good nor leave the daemon
    blind: networkd (the next source there) is followed until a NetworkManager is back, whose
    own state and signals are then believed again."""
    manager = bus.start("NetworkManager")
    manager.send("state 20")  # NM_STATE_DISCONNECTED
    networkd = bus.start("networkd")  # routable
    sources = events.start(bus.env, on_resume=lambda: None)
    network = sources.network
    try:
        assert (network.source, network.online) == ("NetworkManager", False)
        manager.stop()
        wait_until(lambda: network.source == "systemd-networkd", timeout=BOUND, what="networkd")
        assert network.online is True
        networkd.send("operational no-carrier")
        wait_until(lambda: not network.online, timeout=BOUND, what="networkd's offline")
        networkd.send("operational routable")
        wait_until(lambda: network.online, timeout=BOUND, what="networkd's online")

        again = bus.start("NetworkManager")
        wait_until(lambda: network.source == "NetworkManager", timeout=BOUND, what="NM back")
        again.send("state 20")
        wait_until(lambda: not network.online, timeout=BOUND, what="the new NM's state")
        networkd.send("operational routable")  # no longer followed: changes nothing
        again.send("state 70")
        wait_until(lambda: network.online, timeout=BOUND, what="the new NM's online")
        again.send("state 20")
        networkd.send("operational routable")
        wait_until(lambda: not network.online, timeout=BOUND, what="NM, not networkd, followed")
    finally:
        sources.close()


@needs_netns
def test_networkmanager_leaving_hands_over_to_netlink_for_real(
    bus: PrivateSystemBus, link: netns.Link
) -> None:
    """Without networkd, the kernel's routes take over while NetworkManager is gone."""
    manager = bus.start("NetworkManager")
    manager.send("state 20")
    with netns.inside(link.client):  # the watches' threads, and those they start, live there
        sources = events.start(bus.env, on_resume=lambda: None)
    network = sources.network
    try:
        assert (network.source, network.online) == ("NetworkManager", False)
        manager.stop()
        wait_until(lambda: network.source == "netlink", timeout=BOUND, what="netlink")
        wait_until(lambda: network.online, timeout=BOUND, what="online: a default route")
        link.down()
        wait_until(lambda: not network.online, timeout=BOUND, what="netlink's offline")
        link.up()
        wait_until(lambda: network.online, timeout=BOUND, what="netlink's online")

        again = bus.start("NetworkManager")
        again.send("state 20")
        wait_until(lambda: network.source == "NetworkManager", timeout=BOUND, what="NM back")
        wait_until(lambda: not network.online, timeout=BOUND, what="the new NM's state")
    finally:
        sources.close()


@needs_netns
def test_networkd_managing_no_link_is_not_believed(bus: PrivateSystemBus, link: netns.Link) -> None:
    """A networkd that configures nothing says "off" whatever the network does: the kernel's
    routes are followed instead of holding refreshes for good."""
    networkd = bus.start("networkd")
    networkd.send("link 2 unmanaged")  # lo is unmanaged already: no link is managed
    networkd.send("operational off")
    with netns.inside(link.client):
        sources = events.start(bus.env, on_resume=lambda: None)
    try:
        assert sources.network.source == "netlink"
        assert sources.network.online is True
    finally:
        sources.close()


def test_networkd_managing_a_link_is_believed(bus: PrivateSystemBus) -> None:
    networkd = bus.start("networkd")
    networkd.send("link 1 unmanaged")  # only eth0 is managed: enough
    networkd.send("operational no-carrier")
    sources = events.start(bus.env, on_resume=lambda: None)
    try:
        assert (sources.network.source, sources.network.online) == ("systemd-networkd", False)
    finally:
        sources.close()


def test_networkmanager_offline_at_start(bus: PrivateSystemBus) -> None:
    manager = bus.start("NetworkManager")
    manager.send("state 50")  # CONNECTED_LOCAL: no default route
    sources = events.start(bus.env, on_resume=lambda: None)
    try:
        assert sources.network.online is False
        assert sources.resume is None
        assert not sources.complete  # no logind: the tick stays
    finally:
        sources.close()


def test_networkd_without_networkmanager(bus: PrivateSystemBus) -> None:
    networkd = bus.start("networkd")
    sources = events.start(bus.env, on_resume=lambda: None)
    try:
        assert sources.network.source == "systemd-networkd"
        networkd.send("operational no-carrier")
        wait_until(lambda: not sources.network.online, timeout=BOUND, what="offline")
        networkd.send("operational routable")
        wait_until(lambda: sources.network.online, timeout=BOUND, what="online")
    finally:
        sources.close()


def test_a_signal_from_another_sender_is_ignored(bus: PrivateSystemBus) -> None:
    """Broadcast or sent to us directly, an impostor's StateChanged and PrepareForSleep change
    nothing; the owners' own signals, sent after them, do."""
    manager = bus.start("NetworkManager")
    logind = bus.start("logind")
    impostor_nm = bus.start("NetworkManager", impostor=True)
    impostor_logind = bus.start("logind", impostor=True)
    resumes: list[float] = []
    sources = events.start(bus.env, on_resume=lambda: resumes.append(time.monotonic()))
    changes: list[bool] = []
    sources.network.subscribe(changes.append)
    watch = resume_logind.start(bus.env, lambda: resumes.append(-1.0))  # a second watch: its name
    try:
        target = watch._conn.unique_name  # the impostor sends straight to it
        impostor_nm.send("state 20")
        impostor_logind.send("sleep false")
        impostor_logind.send(f"sleep false to {target}")
        # The real ones, after the impostors' (each send returns once the bus routed it):
        logind.send("sleep true")  # going to sleep: nothing to do
        logind.send("sleep false")
        manager.send("state 70")  # no change: still online
        manager.send("state 20")
        wait_until(lambda: changes, timeout=BOUND, what="the real StateChanged")
        wait_until(lambda: len(resumes) >= 2, timeout=BOUND, what="the real resume, twice")
        assert changes == [False]  # only the owner's offline
        assert sorted(r >= 0 for r in resumes) == [False, True]  # one resume per watch, no more
    finally:
        watch.close()
        sources.close()


def test_no_system_bus_falls_back_to_netlink_and_the_tick() -> None:
    sources = events.start(NO_BUS, on_resume=lambda: None)
    try:
        assert sources.network.source == "netlink"
        assert sources.resume is None
        assert not sources.complete
    finally:
        sources.close()


def test_events_off_is_the_old_behaviour() -> None:
    sources = events.start({**NO_BUS, events.EVENTS_ENV: "off"}, on_resume=lambda: None)
    assert sources.describe().startswith("network: none")
    assert isinstance(sources.network, NetworkState)
    assert sources.network.online


# -- the daemon: a link down and up -----------------------------------------------------------

LIFETIME = 20  # seconds: a token that falls due about 10 s after the daemon starts
DAEMON_CONFIG = '[retry]\ninitial = "1s"\nmaximum = "2s"\n[alerts]\ndesktop = false\n'


@pytest.fixture
def far_emulator(link: netns.Link) -> Iterator[Emulator]:
    """The emulator listening in the server namespace, reachable only over the veth link."""
    emulator = Emulator(
        client_id=CLIENT_ID, client_secret=CLIENT_SECRET, host=link.server_ip, device_interval=1
    )
    with netns.inside(link.server):
        emulator.start()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def relay(link: netns.Link, far_emulator: Emulator) -> Iterator[netns.Relay]:
    with netns.inside(link.client):
        running = netns.Relay((link.server_ip, far_emulator.port))
    try:
        yield running
    finally:
        running.close()


def status_of(harness: Harness) -> dict[str, object]:
    run = harness.run("status", "--json")
    payload = json.loads(run.out)
    return dict(payload["accounts"][0])


@needs_netns
def test_a_due_refresh_waits_for_the_link_and_runs_when_it_is_back(
    link: netns.Link,
    far_emulator: Emulator,
    relay: netns.Relay,
    clean_keyring: object,
    tmp_path: Path,
) -> None:
    harness = Harness(
        emulator=far_emulator,
        keyring=clean_keyring,  # type: ignore[arg-type]
        root=tmp_path,
        extra_config=DAEMON_CONFIG,
    )
    url = f"http://127.0.0.1:{relay.port}"
    harness.write_config(harness.config_path.read_text().replace(far_emulator.url, url))
    harness.seed(expires_in=LIFETIME)
    notify_path = tmp_path / "notify.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    notify.settimeout(BOUND)
    daemon = subprocess.Popen(
        [*link.exec_prefix(), *harness.command("run")],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=harness.env(NOTIFY_SOCKET=str(notify_path), **NO_BUS),
    )
    messages: list[str] = []

    def said(text: str) -> bool:
        notify.setblocking(False)
        try:
            while True:
                messages.append(notify.recv(4096).decode())
        except BlockingIOError:
            pass
        return any(text in message for message in messages)

    try:
        wait_until(lambda: said("READY=1"), timeout=BOUND, what="READY")
        link.down()
        # The token falls due while the link is down: nothing is sent, and it says why.
        wait_until(
            lambda: status_of(harness).get("waiting_for") == "network",
            timeout=BOUND,
            what="status: waiting for the network",
        )
        assert status_of(harness)["waiting_for_source"] == "netlink"
        assert said("waiting for the network")
        assert far_emulator.counters().get("refresh_success", 0) == 0
        before = status_of(harness)
        assert before["consecutive_failures"] == 0
        assert before["last_result"] is None  # no attempt was made

        link.up()
        back = time.monotonic()
        wait_until(
            lambda: far_emulator.counters().get("refresh_success", 0) >= 1,
            timeout=BOUND,
            what="the refresh after the link came back",
        )
        print(f"refresh {time.monotonic() - back:.2f} s after the link came back")
        after = status_of(harness)
        assert after["last_result"] == "refreshed"
        assert after["consecutive_failures"] == 0  # the backoff never grew
        assert after["waiting_for"] is None
    finally:
        daemon.terminate()
        _, err = daemon.communicate(timeout=BOUND)
        notify.close()
    assert "daemon.waiting_for_network" in err
    assert "daemon.retry_planned" not in err
    assert "network: netlink" in err


def _harness(emulator: Emulator, keyring: object, root: Path, url: str) -> Harness:
    harness = Harness(
        emulator=emulator,
        keyring=keyring,  # type: ignore[arg-type]
        root=root,
        extra_config=DAEMON_CONFIG,
    )
    harness.write_config(harness.config_path.read_text().replace(emulator.url, url))
    return harness


@needs_netns
def test_the_timer_waits_a_bounded_time_then_exits_75_saying_it_is_offline(
    link: netns.Link,
    far_emulator: Emulator,
    relay: netns.Relay,
    clean_keyring: object,
    tmp_path: Path,
) -> None:
    harness = _harness(far_emulator, clean_keyring, tmp_path, f"http://127.0.0.1:{relay.port}")
    harness.seed(age=600, expires_in=700)  # due
    link.down()
    env = harness.env(**NO_BUS)

    run = harness.run(
        "refresh", "--all", "--wait-for-network", "2s", prefix=link.exec_prefix(), env=env
    )

    assert run.code == 75, run.err
    assert "offline" in run.err
    assert "netlink" in run.err
    assert status_of(harness)["last_result"] is None  # nothing was tried
    assert far_emulator.counters()["refresh_success"] == 0

    link.up()
    run = harness.run(
        "refresh", "--all", "--wait-for-network", "2s", prefix=link.exec_prefix(), env=env
    )
    assert run.code == 0, run.err
    assert "default: refreshed" in run.out
    assert harness.leaks() == []


@needs_netns
def test_the_timer_does_not_wait_when_nothing_is_due(
    link: netns.Link,
    far_emulator: Emulator,
    relay: netns.Relay,
    clean_keyring: object,
    tmp_path: Path,
) -> None:
    harness = _harness(far_emulator, clean_keyring, tmp_path, f"http://127.0.0.1:{relay.port}")
    harness.seed()  # a fresh week-long token
    link.down()

    run = harness.run(
        "refresh", "--all", "--wait-for-network", "10m", prefix=link.exec_prefix(),
        env=harness.env(**NO_BUS), timeout=120,
    )  # fmt: skip

    assert run.code == 0, run.err  # a 10-minute wait would have hit the 2-minute timeout
    assert "not due" in run.out


def test_the_daemon_on_networkmanager_and_logind(
    bus: PrivateSystemBus, harness: Harness, tmp_path: Path
) -> None:
    """The whole daemon on the fakes: offline at start holds the due refresh, NetworkManager's
    StateChanged releases it, logind's PrepareForSleep(false) re-plans at once, an impostor's
    does not, and with both sources there is no tick."""
    manager = bus.start("NetworkManager")
    logind = bus.start("logind")
    impostor = bus.start("logind", impostor=True)
    manager.send("state 20")
    harness.extra_config = DAEMON_CONFIG
    harness.write_config()
    harness.seed(age=600, expires_in=700)  # due at once
    log = tmp_path / "daemon.log"
    with log.open("w") as sink:
        process = subprocess.Popen(
            harness.command("run"),
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=sink,
            env=harness.env(**bus.env),
        )
    try:
        wait_until(
            lambda: status_of(harness).get("waiting_for") == "network",
            timeout=BOUND,
            what="waiting for the network",
        )
        assert harness.emulator.counters()["refresh_success"] == 0
        manager.send("state 70")
        wait_until(
            lambda: harness.emulator.counters()["refresh_success"] >= 1,
            timeout=BOUND,
            what="the refresh once NetworkManager says connected",
        )
        impostor.send("sleep false")
        logind.send("sleep false")
        wait_until(
            lambda: "daemon.resumed" in log.read_text(),
            timeout=BOUND,
            what="the re-plan after the resume",
        )
    finally:
        process.terminate()
        process.wait(timeout=BOUND)
    text = log.read_text()
    assert text.count("daemon.resumed") == 1  # the impostor's went unheard
    assert "network: NetworkManager; resume: logind" in text
    assert "daemon.retry_planned" not in text
    assert status_of(harness)["consecutive_failures"] == 0
