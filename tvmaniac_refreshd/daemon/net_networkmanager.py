"""NetworkManager as the network event source: its ``State`` and the ``StateChanged`` signal.

Online means NM_STATE_CONNECTED_SITE (60) or NM_STATE_CONNECTED_GLOBAL (70): a default route
exists. CONNECTED_LOCAL (50) has no default route, and a captive portal or a failed
connectivity check shows as SITE, where a provider on the local network may still answer, so
SITE counts: the refresh is tried, and a failure there is an ordinary transient failure.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from tvmaniac_refreshd.daemon.network import NetworkState
from tvmaniac_refreshd.daemon.system_bus import SignalWatch

SERVICE = "org.freedesktop.NetworkManager"
PATH = "/org/freedesktop/NetworkManager"
INTERFACE = "org.freedesktop.NetworkManager"
NM_STATE_CONNECTED_SITE = 60
NAME = "NetworkManager"


def is_online(state: int) -> bool:
    return state >= NM_STATE_CONNECTED_SITE


def start(
    environ: Mapping[str, str], on_presence: Callable[[bool], object] = lambda _present: None
) -> tuple[NetworkState, Callable[[], object]]:
    """Watch NetworkManager; BusUnavailable if it is not running. ``on_presence(False)`` when
    it leaves the bus (its last state then means nothing), ``on_presence(True)`` when it is
    back, its state read first (net_fallback follows another source meanwhile)."""
    watch = SignalWatch(environ, SERVICE)
    try:
        watch.owner()
        network = NetworkState(NAME, online=True)
        present = [True]

        def owner_changed(owner: str) -> None:
            present[0] = False
            try:
                if owner:
                    # May fail (a NetworkManager still starting does not answer in time): it
                    # then counts as absent until its first signal, which proves it is there.
                    network.set(is_online(int(watch.get(PATH, INTERFACE, "State"))))
                    present[0] = True
            finally:
                on_presence(present[0])

        def state_changed(body: tuple[Any, ...]) -> None:
            network.set(is_online(int(body[0])))
            if not present[0]:
                present[0] = True
                on_presence(True)

        watch.start(
            path=PATH,
            interface=INTERFACE,
            member="StateChanged",
            on_signal=state_changed,
            first=lambda: network.set(is_online(int(watch.get(PATH, INTERFACE, "State")))),
            on_owner=owner_changed,
        )
    except BaseException:
        watch.close()
        raise
    return network, watch.close
