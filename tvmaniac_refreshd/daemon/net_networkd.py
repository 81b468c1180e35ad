"""systemd-networkd as the network event source: the manager's ``OperationalState``.

Online means ``routable``: a link has a routable address. ``degraded`` (link-local addresses
only) and below promise no route off the machine.
Changes come as ``PropertiesChanged`` of ``org.freedesktop.network1.Manager``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tvmaniac_refreshd.daemon.network import NetworkState
from tvmaniac_refreshd.daemon.system_bus import PROPERTIES, SignalWatch

SERVICE = "org.freedesktop.network1"
PATH = "/org/freedesktop/network1"
INTERFACE = "org.freedesktop.network1.Manager"
NAME = "systemd-networkd"


def is_online(operational_state: str) -> bool:
    return operational_state == "routable"


def start(environ: Mapping[str, str]) -> tuple[NetworkState, SignalWatch]:
    """Watch systemd-networkd; BusUnavailable if it is not running."""
    watch = SignalWatch(environ, SERVICE)
    try:
        watch.owner()
        network = NetworkState(NAME, online=True)

        def changed(body: tuple[Any, ...]) -> None:
            interface, values, invalidated = body
            if interface != INTERFACE:
                return
            if "OperationalState" in values:
                network.set(is_online(str(values["OperationalState"][1])))
            elif "OperationalState" in invalidated:
                network.set(is_online(str(watch.get(PATH, INTERFACE, "OperationalState"))))

        watch.start(
            path=PATH,
            interface=PROPERTIES,
            member="PropertiesChanged",
            on_signal=changed,
            first=lambda: network.set(
                is_online(str(watch.get(PATH, INTERFACE, "OperationalState")))
            ),
            # Gone: as without a source (online), rather than holding refreshes for good.
            on_owner=lambda owner: network.set(
                not owner or is_online(str(watch.get(PATH, INTERFACE, "OperationalState")))
            ),
        )
    except BaseException:
        watch.close()
        raise
    return network, watch
