"""The emulator's clock: a time source plus an offset that tests push forward."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable


class Clock:
    """Unix time as the emulator sees it.

    The offset lets a test jump days ahead while the demo still sees time pass
    in real seconds; a manual source makes unit tests fully deterministic.
    """

    def __init__(self, source: Callable[[], float] | None = None) -> None:
        self._source = source if source is not None else time.time
        self._offset = 0.0
        self._lock = threading.Lock()

    def time(self) -> float:
        """Seconds since the epoch, with sub-second precision (for poll intervals)."""
        with self._lock:
            return self._source() + self._offset

    def now(self) -> int:
        """Whole unix seconds, as Trakt puts them in `created_at`."""
        return math.floor(self.time())

    def advance(self, seconds: float) -> None:
        """Move the clock forward; going back would break every expiry invariant."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        with self._lock:
            self._offset += seconds
