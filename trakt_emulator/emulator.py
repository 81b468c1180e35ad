"""The Emulator object: wires clock, state, edge layer and app to a background HTTP server."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from types import TracebackType

from trakt_emulator.clock import Clock
from trakt_emulator.faults import EdgeLayer
from trakt_emulator.hooks import dispatcher
from trakt_emulator.oauth import OAuthApp
from trakt_emulator.options import Options
from trakt_emulator.server import Backend, EmulatorServer
from trakt_emulator.state import State
from trakt_emulator.sync import SyncApp

DEFAULT_CLIENT_ID = "tvmaniac-emulator-client"
DEFAULT_CLIENT_SECRET = "tvmaniac-emulator-secret"


class Emulator:
    """A Trakt.tv OAuth server on loopback, with faults, its own clock and test hooks.

    Every hook is also reachable over HTTP under ``/_emulator/`` (see `control.py`).
    """

    def __init__(
        self,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str | None = DEFAULT_CLIENT_SECRET,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        clients: Mapping[str, str | None] | None = None,
        clock: Callable[[], float] | None = None,
        **options: object,
    ) -> None:
        self.client_id = client_id
        self._options = Options()
        self._options.update(options)
        self._clock = Clock(clock)
        self._state = State(
            {client_id: client_secret, **(clients or {})}, self._clock, self._options
        )
        self._edge = EdgeLayer(self._options)
        self._app = OAuthApp(self._state)
        self._address = (host, port)
        self._server: EmulatorServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> Emulator:
        """Bind and serve in a daemon thread; returns self for chaining."""
        if self._server is not None:
            raise RuntimeError("emulator already started")
        backend = Backend(self._state, self._edge, self._app, dispatcher(self))
        self._server = EmulatorServer(self._address, backend)
        self._state.open()
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="trakt-emulator",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving, cut open connections and join every thread (idempotent)."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.shutdown()
        self._state.close()
        server.close_connections(timeout)
        server.server_close()
        thread.join(timeout)
        self._server = self._thread = None

    def __enter__(self) -> Emulator:
        return self.start() if self._server is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound TCP port."""
        if self._server is None:
            raise RuntimeError("emulator not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:PORT``; it serves both the auth and the api host."""
        host = self._address[0]
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    @property
    def auth_url(self) -> str:
        """Stands in for https://auth.trakt.tv."""
        return self.url

    @property
    def api_url(self) -> str:
        """Stands in for https://api.trakt.tv."""
        return self.url

    @property
    def errors(self) -> list[str]:
        """Exceptions raised inside the app (each was answered with a 500); empty if none."""
        return list(self._server.errors) if self._server is not None else []

    def open_connections(self) -> int:
        """Connections still being served, control calls included; 0 when stopped.

        After a client is killed, zero (following one control call over HTTP, which the
        server accepts only after every earlier connection) means its request, if any reached
        the server, has been answered and logged.
        """
        return self._server.open_connections() if self._server is not None else 0

    # -- test hooks (E9) -------------------------------------------------------------------

    def now(self) -> int:
        """The emulator's current unix time."""
        return self._clock.now()

    def approve(self, user_code: str, user: str = "alice") -> None:
        """The user allows the app for this code; KeyError if the code is unknown."""
        self._state.approve(user_code, user)

    def deny(self, user_code: str) -> None:
        """The user refuses the app for this code; KeyError if the code is unknown."""
        self._state.deny(user_code)

    def advance_clock(self, seconds: float) -> None:
        """Jump the emulator's clock forward."""
        self._clock.advance(seconds)

    def set_ttl(self, seconds: int) -> None:
        """Access-token lifetime for tokens issued from now on."""
        self.configure(access_ttl=seconds)

    def configure(self, **options: object) -> None:
        """Change any option (all-or-nothing); ValueError names a bad one."""
        self._state.configure(options)

    def add_fault(self, fault: Mapping[str, object]) -> dict[str, object]:
        """Queue a one-shot fault; returns it with defaults filled in."""
        return self._edge.add(fault)

    def clear_faults(self) -> None:
        """Drop every queued fault."""
        self._edge.clear()

    def expire_access(self, user: str) -> int:
        """Expire the user's access tokens; returns the number of grants touched."""
        return self._state.expire_access(user)

    def revoke_grant(self, user: str) -> int:
        """The user removes the app; returns the number of grants revoked."""
        return self._state.revoke_grant(user)

    def mark_legacy(self, refresh_token: str) -> None:
        """Make a refresh token pre-migration: refused with "session not found"."""
        self._state.mark_legacy(refresh_token)

    def lock_user(self, user: str, locked: bool = True) -> None:
        """Make the probe endpoint answer 423 for this user (or stop doing so)."""
        self._state.lock_user(user, locked)

    def seed_grant(
        self,
        user: str,
        access_token: str | None = None,
        refresh_token: str | None = None,
        created_at: int | None = None,
        expires_in: int | None = None,
        *,
        client_id: str | None = None,
    ) -> dict[str, object]:
        """Plant a grant with known tokens and times (defaults: random tokens, now, the TTL)."""
        return self._state.seed_grant(
            user, access_token, refresh_token, created_at, expires_in, client_id or self.client_id
        )

    def authorize(
        self,
        user: str,
        redirect_uri: str,
        code_challenge: str | None = None,
        *,
        client_id: str | None = None,
    ) -> str:
        """An authorization code, as the browser redirect would deliver it (S256 if challenged)."""
        return self._state.authorize(
            user, redirect_uri, code_challenge, client_id or self.client_id
        )

    def add_client(self, client_id: str, client_secret: str | None) -> None:
        """Register another app (None: a public client that must use PKCE)."""
        self._state.add_client(client_id, client_secret)

    def reset(self) -> None:
        """Forget grants, codes, counters, the log and queued faults; keep clients and options."""
        self._state.reset()
        self._edge.clear()

    def wait_for_user_code(self, timeout: float = 10.0) -> str:
        """Block until a device login is pending and return its user code."""
        return self._state.wait_for_user_code(timeout)

    def state(self) -> dict[str, object]:
        """Requests log, counters, grants, pending user codes, faults and options, as JSON data."""
        return {**self._state.snapshot(), "faults": self._edge.pending()}

    def requests(self, path: str | None = None) -> list[dict[str, object]]:
        """The request log, optionally only entries whose path starts with `path`."""
        return [
            entry
            for entry in self._state.request_log()
            if path is None or str(entry["path"]).startswith(path)
        ]

    @property
    def sync(self) -> SyncApp:
        """The users' libraries behind the sync endpoints: add shows, watchlist items, plays."""
        return self._app.sync

    def counters(self) -> dict[str, int]:
        """Counters such as ``invalid_grant`` and ``refresh_success``."""
        return self._state.counter_values()
