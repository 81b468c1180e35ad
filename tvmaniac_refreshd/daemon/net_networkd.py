"""systemd-networkd as the network event source: the manager's ``OperationalState``.

Online means ``routable``: a link has a routable address. ``degraded`` (link-local addresses
only) and below promise no route off the machine.
Changes come as ``PropertiesChanged`` of ``org.freedesktop.network1.Manager``.

A networkd that runs but manages no link (every link's ``AdministrativeState`` is
``unmanaged``: another tool configures the network) says ``off`` or ``no-carrier`` whatever the
network does, which would hold refreshes for good; it is not used then (net_fallback goes on to
netlink). Whether it manages a link is asked when it is started and each time it comes back.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from tvmaniac_refreshd.daemon.network import NetworkState
from tvmaniac_refreshd.daemon.system_bus import PROPERTIES, BusUnavailable, SignalWatch

SERVICE = "org.freedesktop.network1"
PATH = "/org/freedesktop/network1"
INTERFACE = "org.freedesktop.network1.Manager"
LINK_INTERFACE = "org.freedesktop.network1.Link"
UNMANAGED = "unmanaged"
NAME = "systemd-networkd"


def is_online(operational_state: str) -> bool:
    return operational_state == "routable"


def manages_a_link(watch: SignalWatch) -> bool:
    """Whether some link's AdministrativeState is other than ``unmanaged`` (ListLinks gives
    ``a(iso)``: index, name, object path)."""
    (links,) = watch.call(PATH, INTERFACE, "ListLinks")
    return any(
        str(watch.get(str(path), LINK_INTERFACE, "AdministrativeState")) != UNMANAGED
        for _index, _name, path in links
    )


def start(
    environ: Mapping[str, str], on_presence: Callable[[bool], object] = lambda _present: None
) -> tuple[NetworkState, Callable[[], object]]:
    """Watch systemd-networkd; BusUnavailable if it is not running or manages no link.
    ``on_presence`` as net_networkmanager's: False when it leaves the bus (or comes back
    managing nothing), True when it is back and usable."""
    watch = SignalWatch(environ, SERVICE)
    try:
        watch.owner()
        if not manages_a_link(watch):
            raise BusUnavailable(f"{SERVICE} manages no link")  # noqa: TRY301
        network = NetworkState(NAME, online=True)
        present = [True]

        def changed(body: tuple[Any, ...]) -> None:
            interface, values, invalidated = body
            if interface != INTERFACE:
                return
            if not present[0]:  # its owner was not answering: a signal shows it is back
                owner_changed(watch.owner())
            elif "OperationalState" in values:
                network.set(is_online(str(values["OperationalState"][1])))
            elif "OperationalState" in invalidated:
                network.set(is_online(str(watch.get(PATH, INTERFACE, "OperationalState"))))

        def owner_changed(owner: str) -> None:
            present[0] = False
            try:
                # May fail (a networkd still starting does not answer in time): it then counts
                # as absent until its next signal.
                if owner and manages_a_link(watch):
                    network.set(is_online(str(watch.get(PATH, INTERFACE, "OperationalState"))))
                    present[0] = True
            finally:
                on_presence(present[0])

        watch.start(
            path=PATH,
            interface=PROPERTIES,
            member="PropertiesChanged",
            on_signal=changed,
            first=lambda: network.set(
                is_online(str(watch.get(PATH, INTERFACE, "OperationalState")))
            ),
            on_owner=owner_changed,
        )
    except BaseException:
        watch.close()
        raise
    return network, watch.close
