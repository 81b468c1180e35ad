"""The network source the daemon follows: the first one there, down the list when it leaves.

The list is NetworkManager, systemd-networkd, netlink. When the followed service leaves the
system bus (a stopped or crashed NetworkManager), the next one there is started and followed,
so the daemon still knows whether it is online; when the better one comes back
(NameOwnerChanged), it is followed again and the ones below it are closed. Netlink never
leaves. With none at all, the state is online for good, as without any source.

Each source writes its own ``NetworkState``; the chain mirrors the followed one's into the
one the daemon reads, so a switch needs nothing from the daemon's side.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tvmaniac_refreshd.core.logs import get_logger
from tvmaniac_refreshd.daemon.net_netlink import NetlinkUnavailable
from tvmaniac_refreshd.daemon.network import NetworkState
from tvmaniac_refreshd.daemon.system_bus import BusUnavailable

# Not there (no bus, no owner, no route socket), or answering what its interface does not allow
# (a wrong type in a property): either way that source is skipped.
UNUSABLE = (BusUnavailable, NetlinkUnavailable, ValueError, TypeError)
Presence = Callable[[bool], object]
Closer = Callable[[], object]
# Start a source: its state and its closer; ``presence(False)`` once it leaves the bus,
# ``presence(True)`` once it is back. Raises one of UNUSABLE when it is not there.
Starter = Callable[[Presence], tuple[NetworkState, Closer]]


@dataclass(frozen=True)
class Candidate:
    name: str
    start: Starter


class NetworkChain:
    """Follows the first candidate that is there; thread-safe (presence comes from watchers)."""

    def __init__(self, candidates: Sequence[Candidate]) -> None:
        self.network = NetworkState("none")
        self._candidates = list(candidates)
        self._lock = threading.RLock()
        self._started: dict[int, tuple[NetworkState, Closer]] = {}
        self._present: dict[int, bool] = {}
        self._active: int | None = None
        self._closed = False
        with self._lock:
            self._follow(0)

    def _follow(self, first: int) -> None:
        """Follow the first candidate from ``first`` on that is there (lock held)."""
        for index in range(first, len(self._candidates)):
            if index in self._started:
                if self._present.get(index):
                    self._activate(index)
                    return
                continue
            try:
                state, close = self._candidates[index].start(
                    functools.partial(self._presence, index)
                )
            except UNUSABLE:
                continue
            self._started[index] = (state, close)
            self._present[index] = True
            state.subscribe(functools.partial(self._changed, index))
            self._activate(index)
            return
        self._activate(None)

    def _activate(self, index: int | None) -> None:
        previous, self._active = self._active, index
        if index is None:
            self.network.source = "none"
            self.network.set(True)  # no source: as before the daemon knew of the network
        else:
            self.network.source = self._candidates[index].name
            self.network.set(self._started[index][0].online)
        if previous is not None and previous != index:
            get_logger().info(
                "events.network_source",
                source=self.network.source,
                was=self._candidates[previous].name,
                online=self.network.online,
            )

    def _changed(self, index: int, online: bool) -> None:
        with self._lock:
            if index == self._active:
                self.network.set(online)

    def _presence(self, index: int, present: bool) -> None:
        closers: list[Closer] = []
        with self._lock:
            if self._closed or index not in self._started:
                return
            self._present[index] = present
            if present and (self._active is None or index < self._active):
                # The better source is back: follow it, and stop the fallbacks below it.
                for below in [i for i in self._started if i > index]:
                    closers.append(self._started.pop(below)[1])
                    self._present.pop(below, None)
                self._activate(index)
            elif not present and index == self._active:
                self._follow(index + 1)
        # Outside the lock: a closing watcher's thread may be waiting for it in ``_changed``.
        for close in closers:
            with contextlib.suppress(Exception):
                close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            closers = [close for _state, close in self._started.values()]
            self._started.clear()
        for close in closers:
            with contextlib.suppress(Exception):
                close()
