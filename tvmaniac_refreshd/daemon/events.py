"""Which event sources the daemon has: one for the network, one for resume; each may be none.

Network: NetworkManager when it runs, else systemd-networkd (if it manages a link), else the
kernel's routes over netlink (Linux); when the one followed leaves the bus, the next one takes
over until it is back (net_fallback). Resume: logind's PrepareForSleep. Clock steps: a
timerfd (clock_steps). Where none exists (macOS, a container without a system bus) the daemon
keeps its periodic tick, and the network counts as always online, which is what it did before.
``config check`` shows ``describe``'s answer.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from tvmaniac_refreshd.daemon import (
    clock_steps,
    net_fallback,
    net_netlink,
    net_networkd,
    net_networkmanager,
    resume_logind,
)
from tvmaniac_refreshd.daemon.network import NetworkState

UNUSABLE = net_fallback.UNUSABLE
# TVMANIAC_REFRESHD_EVENTS=off: no event source (the tick, as before); for a bench's baseline
# and for a system whose sources mislead (a network manager that reports offline wrongly).
EVENTS_ENV = "TVMANIAC_REFRESHD_EVENTS"


@dataclass
class Sources:
    """What ``start`` found; ``close`` stops the watching threads."""

    network: NetworkState
    resume: str | None = None  # the name of the resume source, None without one
    clock: str | None = None  # what tells of wall-clock steps (clock_steps), None without it
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
        clock = self.clock or "none (a step is noticed at the next wake-up)"
        return f"network: {network}; resume: {resume}; clock steps: {clock}"

    def close(self) -> None:
        for closer in self._closers:
            with contextlib.suppress(Exception):
                closer()


def network_candidates(environ: Mapping[str, str]) -> list[net_fallback.Candidate]:
    """The network sources, best first (net_fallback follows the first one there)."""

    def netlink(_presence: object) -> tuple[NetworkState, Callable[[], object]]:
        watch = net_netlink.NetlinkWatch()  # NetlinkUnavailable: one of UNUSABLE
        return watch.network, watch.close

    return [
        net_fallback.Candidate(
            net_networkmanager.NAME, functools.partial(net_networkmanager.start, environ)
        ),
        net_fallback.Candidate(net_networkd.NAME, functools.partial(net_networkd.start, environ)),
        net_fallback.Candidate(net_netlink.NAME, netlink),
    ]


def start(
    environ: Mapping[str, str],
    on_resume: Callable[[], object],
    on_clock_step: Callable[[], object] | None = None,
) -> Sources:
    """Start the best sources this machine has; never raise. ``on_clock_step``: also watch
    for steps of the wall clock (the daemon; a one-shot command has no plan to redo)."""
    if sys.platform != "linux" or environ.get(EVENTS_ENV, "").lower() in ("off", "0", "no"):
        return Sources(NetworkState())
    chain = net_fallback.NetworkChain(network_candidates(environ))
    sources = Sources(chain.network, _closers=[chain.close])
    try:
        watch = resume_logind.start(environ, on_resume)
    except UNUSABLE:
        pass
    else:
        sources.resume = resume_logind.NAME
        sources._closers.append(watch.close)
    if on_clock_step is not None:
        try:
            clock = clock_steps.ClockWatch(on_clock_step)
        except clock_steps.ClockStepsUnavailable:
            pass
        else:
            sources.clock = clock_steps.NAME
            sources._closers.append(clock.close)
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
    sources = start({**environ}, on_resume=lambda: None, on_clock_step=lambda: None)
    try:
        detail = sources.describe()
        if not sources.complete:
            detail += "; the daemon keeps its periodic tick"
        else:
            detail += "; no periodic tick"
        return sources.complete, detail
    finally:
        sources.close()
