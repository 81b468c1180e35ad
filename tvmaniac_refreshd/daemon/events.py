"""Which event sources the daemon has: one for the network, one for resume; each may be none.

Network: NetworkManager when it runs, else systemd-networkd, else the kernel's routes over
netlink (Linux). Resume: logind's PrepareForSleep. Where none exists (macOS, a container
without a system bus) the daemon keeps its periodic tick, and the network counts as always
online, which is what it did before. ``config check`` shows ``describe``'s answer.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from tvmaniac_refreshd.daemon import net_netlink, net_networkd, net_networkmanager, resume_logind
from tvmaniac_refreshd.daemon.network import NetworkState
from tvmaniac_refreshd.daemon.system_bus import BusUnavailable

# Not there, or answering what its interface does not allow (a wrong type in a property):
# either way the daemon goes on without that source.
UNUSABLE = (BusUnavailable, ValueError, TypeError)
# TVMANIAC_REFRESHD_EVENTS=off: no event source (the tick, as before); for a bench's baseline
# and for a system whose sources mislead (a network manager that reports offline wrongly).
EVENTS_ENV = "TVMANIAC_REFRESHD_EVENTS"


@dataclass
class Sources:
    """What ``start`` found; ``close`` stops the watching threads."""

    network: NetworkState
    resume: str | None = None  # the name of the resume source, None without one
    _closers: list[Callable[[], object]] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Both kinds of event are heard: the daemon needs no periodic tick."""
        return self.network.source != "none" and self.resume is not None

    def describe(self) -> str:
        resume = self.resume or "none (the periodic tick notices a resume)"
        network = (
            self.network.source
            if self.network.source != "none"
            else "none (a refresh is tried whatever the network)"
        )
        return f"network: {network}; resume: {resume}"

    def close(self) -> None:
        for closer in self._closers:
            with contextlib.suppress(Exception):
                closer()


def start(environ: Mapping[str, str], on_resume: Callable[[], object]) -> Sources:
    """Start the best sources this machine has; never raise."""
    if sys.platform != "linux" or environ.get(EVENTS_ENV, "").lower() in ("off", "0", "no"):
        return Sources(NetworkState())
    sources = Sources(NetworkState())
    for module in (net_networkmanager, net_networkd):
        try:
            network, watch = module.start(environ)
        except UNUSABLE:
            continue
        sources.network = network
        sources._closers.append(watch.close)
        break
    else:
        try:
            netlink = net_netlink.NetlinkWatch()
        except net_netlink.NetlinkUnavailable:
            pass
        else:
            sources.network = netlink.network
            sources._closers.append(netlink.close)
    try:
        watch = resume_logind.start(environ, on_resume)
    except UNUSABLE:
        pass
    else:
        sources.resume = resume_logind.NAME
        sources._closers.append(watch.close)
    return sources


def wait_for_network(environ: Mapping[str, str], timeout: float) -> tuple[bool, str]:
    """Wait up to ``timeout`` seconds for the network (the timer's oneshot, which a user timer
    cannot order after network-online.target); return (online, the source's name)."""
    sources = start({**environ}, on_resume=lambda: None)
    try:
        return sources.network.wait_online(timeout), sources.network.source
    finally:
        sources.close()


def probe(environ: Mapping[str, str]) -> tuple[bool, str]:
    """What `config check` says: whether the daemon could drop its tick, and which sources."""
    sources = start({**environ}, on_resume=lambda: None)
    try:
        detail = sources.describe()
        if not sources.complete:
            detail += "; the daemon keeps its periodic tick"
        else:
            detail += "; no periodic tick"
        return sources.complete, detail
    finally:
        sources.close()
