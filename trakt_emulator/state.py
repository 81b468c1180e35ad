"""The emulator's thread-safe state: clients, grants, pending codes, counters, request log."""

from __future__ import annotations

import collections
import dataclasses
import threading
import time
from collections.abc import Mapping

from trakt_emulator.clock import Clock
from trakt_emulator.devices import CodeStore, DeviceCode, Poll
from trakt_emulator.options import Options
from trakt_emulator.tokens import Grant, GrantStore, TokenSet

COUNTERS = (
    "requests",
    "invalid_grant",
    "refresh_success",
    "device_token_success",
    "auth_code_success",
    "revoke",
    "faults",
    "cf_blocked",
)


@dataclasses.dataclass
class LoggedRequest:
    """One request as the emulator saw it; `status` is None when no response was sent."""

    time: int
    wall_time: float
    method: str
    path: str
    headers: dict[str, str]
    body: object
    status: int | None = None
    fault: str | None = None

    def as_json(self) -> dict[str, object]:
        """A JSON-ready copy."""
        return dataclasses.asdict(self)


class State:
    """All mutable emulator state behind one lock, so concurrent requests see atomic steps."""

    def __init__(self, clients: Mapping[str, str | None], clock: Clock, options: Options) -> None:
        self.clock = clock
        self.options = options
        self.lock = threading.RLock()
        self._changed = threading.Condition(self.lock)
        self.clients: dict[str, str | None] = dict(clients)
        self.grants = GrantStore()
        self.codes = CodeStore()
        self.counters: collections.Counter[str] = collections.Counter()
        self.locked_users: set[str] = set()
        self._closed = False
        self.log: collections.deque[LoggedRequest] = collections.deque(
            maxlen=options.request_log_limit
        )

    # -- client authentication -------------------------------------------------------------

    def known_client(self, client_id: object) -> bool:
        """Whether `client_id` names a registered app."""
        return isinstance(client_id, str) and client_id in self.clients

    def client_ok(
        self,
        client_id: object,
        secret: object,
        *,
        secret_optional: bool = False,
    ) -> bool:
        """Check the pair; a missing secret passes only for PKCE or secretless clients."""
        with self.lock:
            if not isinstance(client_id, str) or client_id not in self.clients:
                return False
            expected = self.clients[client_id]
        if secret is None:
            return secret_optional or expected is None
        return secret == expected

    # -- OAuth operations ------------------------------------------------------------------

    def start_device(self, client_id: str) -> DeviceCode:
        """E1: a new pending device grant."""
        with self._changed:
            opts = self.options
            device = self.codes.new_device(
                client_id, self.clock.now(), opts.device_expires_in, opts.device_interval
            )
            self._changed.notify_all()
            return device

    def poll_device(self, code: str, client_id: str) -> tuple[Poll, TokenSet | None]:
        """E2 checks 2-8; an approval issues the grant in the same atomic step."""
        with self.lock:
            now = self.clock.now()
            opts = self.options
            outcome, device = self.codes.poll(
                code,
                client_id,
                now,
                self.clock.time(),
                opts.auto_approve_after_polls,
                opts.auto_approve_user,
            )
            if outcome is not Poll.APPROVED or device is None or device.user is None:
                return outcome, None
            grant = self.grants.issue(device.user, client_id, now, opts.access_ttl)
            self.counters["device_token_success"] += 1
            return outcome, self.grants.token_set(grant)

    def refresh(self, client_id: str, refresh_token: str) -> TokenSet | None:
        """E4: rotate the grant whose *current* refresh token this is, else None (invalid_grant)."""
        with self.lock:
            now = self.clock.now()
            opts = self.options
            grant = self.grants.by_refresh(refresh_token)
            if refresh_token in self.grants.legacy or grant is None or grant.revoked:
                return None
            if grant.client_id != client_id:
                return None
            if grant.refresh_token != refresh_token:
                if opts.reuse_revokes_family:
                    self.grants.revoke(grant)
                return None
            if opts.refresh_ttl is not None and now >= grant.refresh_created_at + opts.refresh_ttl:
                return None
            tokens = self.grants.rotate(
                grant, now, opts.access_ttl, opts.revoke_old_access_on_refresh
            )
            self.counters["refresh_success"] += 1
            return tokens

    def redeem_code(
        self,
        client_id: str,
        code: str,
        redirect_uri: object,
        verifier: object,
    ) -> TokenSet | str:
        """E3: a token pair for a valid authorization code, or the reason it was refused."""
        with self.lock:
            now = self.clock.now()
            auth = self.codes.redeem(code, client_id, redirect_uri, verifier, now)
            if isinstance(auth, str):
                return auth
            grant = self.grants.issue(auth.user, client_id, now, self.options.access_ttl)
            self.counters["auth_code_success"] += 1
            return self.grants.token_set(grant)

    def revoke_token(self, client_id: str, token: str) -> None:
        """E6: unknown tokens and other clients' tokens are silently ignored, RFC 7009 style."""
        with self.lock:
            self.counters["revoke"] += 1
            found = self.grants.by_access(token)
            if found is not None and found[0].client_id == client_id:
                grant, access = found
                access.revoked = True
                if self.options.revoke_kills_refresh:
                    self.grants.revoke(grant)
                return
            grant_by_refresh = self.grants.by_refresh(token)
            if grant_by_refresh is not None and grant_by_refresh.client_id == client_id:
                self.grants.revoke(grant_by_refresh)

    def access_user(self, token: str) -> str | None:
        """The user a bearer token acts for, or None if it is unknown, expired or revoked."""
        with self.lock:
            found = self.grants.by_access(token)
            if found is None:
                return None
            grant, access = found
            if grant.revoked or not access.valid_at(self.clock.now()):
                return None
            return grant.user

    def count(self, name: str) -> None:
        """Bump a counter."""
        with self.lock:
            self.counters[name] += 1

    # -- test hooks (E9) -------------------------------------------------------------------

    def approve(self, user_code: str, user: str) -> None:
        """The user typed the code and allowed the app."""
        with self.lock:
            self.codes.find_user_code(user_code).user = user

    def deny(self, user_code: str) -> None:
        """The user typed the code and refused."""
        with self.lock:
            self.codes.find_user_code(user_code).denied = True

    def expire_access(self, user: str) -> int:
        """Expire every access token of the user's grants; refresh tokens stay usable."""
        with self.lock:
            grants = self._user_grants(user)
            for grant in grants:
                for token in grant.access:
                    token.forced_expired = True
            return len(grants)

    def revoke_grant(self, user: str) -> int:
        """The user removed the app: every grant of theirs dies."""
        with self.lock:
            grants = self._user_grants(user)
            for grant in grants:
                self.grants.revoke(grant)
            return len(grants)

    def mark_legacy(self, refresh_token: str) -> None:
        """A pre-migration refresh token: refused with "session not found"."""
        with self.lock:
            self.grants.legacy.add(refresh_token)

    def lock_user(self, user: str, locked: bool = True) -> None:
        """Toggle the 423 locked-account answer on the probe endpoint."""
        with self.lock:
            if locked:
                self.locked_users.add(user)
            else:
                self.locked_users.discard(user)

    def is_locked(self, user: str) -> bool:
        """Whether the user's account is locked."""
        with self.lock:
            return user in self.locked_users

    def seed_grant(
        self,
        user: str,
        access_token: str | None,
        refresh_token: str | None,
        created_at: int | None,
        expires_in: int | None,
        client_id: str,
    ) -> dict[str, object]:
        """Plant a known token pair, e.g. one that is already due for refresh."""
        with self.lock:
            if client_id not in self.clients:
                raise ValueError(f"unknown client_id {client_id!r}")
            now = self.clock.now()
            grant = self.grants.issue(
                user, client_id, now, self.options.access_ttl, access_token, refresh_token
            )
            access = grant.current_access
            access.created_at = now if created_at is None else created_at
            access.expires_in = self.options.access_ttl if expires_in is None else expires_in
            grant.refresh_created_at = access.created_at
            return grant.summary(now)

    def authorize(
        self,
        user: str,
        redirect_uri: str,
        code_challenge: str | None,
        client_id: str,
    ) -> str:
        """Issue an authorization code as if the user approved the app in a browser."""
        with self.lock:
            if client_id not in self.clients:
                raise ValueError(f"unknown client_id {client_id!r}")
            auth = self.codes.new_auth_code(
                client_id,
                user,
                redirect_uri,
                code_challenge,
                self.clock.now(),
                self.options.auth_code_expires_in,
            )
            return auth.code

    def add_client(self, client_id: str, client_secret: str | None) -> None:
        """Register another app; None makes a public (PKCE-only) client."""
        with self.lock:
            self.clients[client_id] = client_secret

    def configure(self, changes: Mapping[str, object]) -> None:
        """Change options; resizing the log keeps its newest entries."""
        with self.lock:
            self.options.update(changes)
            if self.log.maxlen != self.options.request_log_limit:
                self.log = collections.deque(self.log, maxlen=self.options.request_log_limit)

    def reset(self) -> None:
        """Forget grants, codes, counters, locks and the log; keep clients and options."""
        with self.lock:
            self.grants = GrantStore()
            self.codes = CodeStore()
            self.counters.clear()
            self.locked_users.clear()
            self.log.clear()

    def open(self) -> None:
        """Let waiters block again (the emulator has been started)."""
        with self.lock:
            self._closed = False

    def close(self) -> None:
        """Wake every waiter so stop() never waits for a control call's timeout."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def wait_for_user_code(self, timeout: float) -> str:
        """Block until a device code is pending; return the newest one."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not self._closed:
                pending = self.pending_user_codes()
                if pending:
                    return pending[-1]
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("no device code became pending")
                self._changed.wait(remaining)
            raise TimeoutError("emulator stopped")

    def pending_user_codes(self) -> list[str]:
        """User codes still waiting for approve/deny, oldest first."""
        with self.lock:
            now = self.clock.now()
            return [
                device.user_code
                for device in self.codes.devices.values()
                if device.status(now) == "pending"
            ]

    # -- request log and inspection --------------------------------------------------------

    def log_request(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        body: object,
    ) -> LoggedRequest:
        """Record a request before it is answered."""
        with self.lock:
            entry = LoggedRequest(self.clock.now(), time.time(), method, path, headers, body)
            self.log.append(entry)
            self.counters["requests"] += 1
            return entry

    def finish_request(self, entry: LoggedRequest, status: int | None, fault: str | None) -> None:
        """Record how a logged request is answered, before the answer is written."""
        with self.lock:
            entry.status = status
            entry.fault = fault

    def snapshot(self) -> dict[str, object]:
        """Everything a test may want to assert on, as JSON-ready data."""
        with self.lock:
            now = self.clock.now()
            return {
                "now": now,
                "options": self.options.as_dict(),
                "clients": sorted(self.clients),
                "counters": self.counter_values(),
                "requests": self.request_log(),
                "grants": [grant.summary(now) for grant in self.grants.grants],
                "pending": self.pending_user_codes(),
                "device_codes": [device.summary(now) for device in self.codes.devices.values()],
                "locked_users": sorted(self.locked_users),
                "legacy_refresh_tokens": sorted(self.grants.legacy),
            }

    def request_log(self) -> list[dict[str, object]]:
        """The logged requests, oldest first."""
        with self.lock:
            return [entry.as_json() for entry in self.log]

    def counter_values(self) -> dict[str, int]:
        """Every counter, the well-known ones even when still zero."""
        with self.lock:
            return {name: self.counters[name] for name in (*COUNTERS, *self.counters)}

    def _user_grants(self, user: str) -> list[Grant]:
        grants = self.grants.for_user(user)
        if not grants:
            raise KeyError(f"no grant for user {user!r}")
        return grants
