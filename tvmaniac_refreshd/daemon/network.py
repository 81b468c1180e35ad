"""Whether the machine is online: one object the daemon (and background jobs) ask and subscribe to.

An event source (net_networkmanager, net_networkd, net_netlink) is the only writer; it calls
``NetworkState.set`` from its own thread when the state changes. Readers ask ``online``,
``subscribe`` to hear of each change, or ``wait_online`` for a bounded time (the timer's
oneshot). Without a source, the state is online for good: nothing is ever deferred, which is
what the daemon did before it knew about the network.

The interface, for a job that needs the network::

    if not network.online:            # defer; do not count it as a failure
        ...
    cancel = network.subscribe(lambda online: ...)   # called on every change, any thread
    network.wait_online(30.0)         # True once online, False after 30 s
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable

Listener = Callable[[bool], object]


class NetworkState:
    """Online or offline, as ``source`` last said; thread-safe."""

    def __init__(self, source: str = "none", *, online: bool = True) -> None:
        self.source = source  # which event source writes it ("none": always online)
        self._online = online
        self._changed = threading.Condition()
        self._listeners: list[Listener] = []

    @property
    def online(self) -> bool:
        return self._online

    def set(self, online: bool) -> None:
        """Record what the source says; listeners hear of a change (not of a repeat)."""
        with self._changed:
            if online == self._online:
                return
            self._online = online
            self._changed.notify_all()
            listeners = list(self._listeners)
        for listener in listeners:  # outside the lock: a listener may ask ``online``
            listener(online)

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(online)`` on each change, from the source's thread; return a cancel."""
        with self._changed:
            self._listeners.append(listener)

        def cancel() -> None:
            with self._changed, contextlib.suppress(ValueError):
                self._listeners.remove(listener)

        return cancel

    def wait_online(self, timeout: float) -> bool:
        """Return True once online (at once if it is), False if ``timeout`` seconds pass first."""
        with self._changed:
            return self._changed.wait_for(lambda: self._online, timeout)
