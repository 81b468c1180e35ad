"""Where each keyring item lives, so that a long-lived process need not search for it each time.

gnome-keyring answers a SearchItems by looking at every item of the collection, so a daemon with
a thousand accounts that searched for each read paid a thousand times a thousand. The daemon's
store keeps here the object path each (service, user name) was found at; secret_service.py
uses it and checks it on every use.

Why a remembered path never yields an old pair: a path names an item, not a value. Every read
through it asks the Secret Service for that item's secret as it is now, after checking that
the item still exists and still carries the same service and user name; if not, the path is
forgotten and the item searched for again. Writes replace the item in place (CreateItem with
replace), and a write forgets the path, so the read-back that verifies it searches. A path is
remembered only when a search found exactly one item for that user name: where two items would
match, which one a search returns first is the Secret Service's choice, so those are searched
for every time, exactly as without this cache.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable


class ItemPaths:
    """A thread-safe map of (service, user name) to the object path of its only item."""

    def __init__(self) -> None:
        self._paths: dict[tuple[str, str], str] = {}
        self._primed: set[str] = set()  # services listed once in full (see ``prime``)
        self._lock = threading.Lock()

    def get(self, service: str, username: str) -> str | None:
        with self._lock:
            return self._paths.get((service, username))

    def remember(self, service: str, username: str, path: str) -> None:
        with self._lock:
            self._paths[(service, username)] = path

    def forget(self, service: str, username: str) -> None:
        with self._lock:
            self._paths.pop((service, username), None)

    def primed(self, service: str) -> bool:
        with self._lock:
            return service in self._primed

    def prime(self, service: str, items: Iterable[tuple[str, str | None]]) -> None:
        """Remember every (path, user name) of one listing of ``service``'s items.

        A user name seen on more than one item is left out: see the module docstring.
        """
        seen: dict[str, list[str]] = {}
        for path, username in items:
            if username is not None:
                seen.setdefault(username, []).append(path)
        with self._lock:
            self._primed.add(service)
            for username, paths in seen.items():
                if len(paths) == 1:
                    self._paths[(service, username)] = paths[0]
                else:
                    self._paths.pop((service, username), None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._paths)
