"""In-process fakes for unit tests: a clock, a memory keyring backend, recording transports."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from tvmaniac_refreshd.core.tokens import TokenSet
from tvmaniac_refreshd.providers.base import BrowserLogin, DeviceCode, PollState, Wording
from tvmaniac_refreshd.providers.trakt import WORDING


class FakeClock:
    """A clock that only moves when told to; sleeping advances it instead of waiting."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("time does not run backwards here")
        self.now += seconds

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(seconds)


@dataclass
class MemoryBackend:
    """A keyring backend in a dict; optional failure or hang injected per call."""

    atomic_writes = True  # a dict assignment replaces in one step (see storage/two_phase.py)

    items: dict[tuple[str, str], str] = field(default_factory=dict)
    fail_with: BaseException | None = None
    hang: threading.Event | None = None
    calls: int = 0

    def _maybe_fail(self) -> None:
        self.calls += 1
        if self.hang is not None:
            self.hang.wait()
        if self.fail_with is not None:
            raise self.fail_with

    def get_password(self, service: str, username: str) -> str | None:
        self._maybe_fail()
        return self.items.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self._maybe_fail()
        self.items[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self._maybe_fail()
        del self.items[(service, username)]


class ProviderParts:
    """The rest of the Provider interface for a fake that scripts only one part of it.

    A unit under test that reaches a part its fake did not script fails loudly here: these
    are not answers, they are the test saying "this path was not expected".
    """

    wording: Wording = WORDING
    has_device_login: bool = True

    def browser(self) -> BrowserLogin | None:
        return None

    def request_device_code(self, *, now: float) -> DeviceCode:
        raise AssertionError("this fake provider does not start device logins")

    def poll_device_token(self, device: DeviceCode, *, now: float) -> TokenSet | PollState:
        raise AssertionError("this fake provider does not poll device logins")

    def refresh(self, refresh_token: str, *, now: float) -> TokenSet:
        raise AssertionError("this fake provider does not refresh")

    def revoke(self, tokens: TokenSet, *, now: float) -> None:
        raise AssertionError("this fake provider does not revoke")

    def identity(self, tokens: TokenSet, *, now: float) -> str | None:
        raise AssertionError("this fake provider does not say who logged in")
