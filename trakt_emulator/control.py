"""A stdlib client for the control API, for tests and demos that run the emulator as a process."""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit


class EmulatorControlError(RuntimeError):
    """The control API answered with an unexpected error status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"emulator control API: {status} {message}")
        self.status = status


class EmulatorControl:
    """The same hooks as `Emulator`, over HTTP; errors map back to KeyError/ValueError."""

    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        if urlsplit(base_url).scheme not in ("http", "https"):
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.url = base_url.rstrip("/")
        self.timeout = timeout

    @classmethod
    def from_port_file(cls, path: str | Path, timeout: float = 10.0) -> EmulatorControl:
        """Wait for the file `--port-file` names, then connect to the URL it holds."""
        deadline = time.monotonic() + timeout
        port_file = Path(path)
        while True:
            try:
                url = port_file.read_text(encoding="utf-8").strip()
            except FileNotFoundError:
                url = ""
            if url:
                return cls(url)
            if time.monotonic() > deadline:
                raise TimeoutError(f"{port_file} did not appear within {timeout} s")
            time.sleep(0.05)

    # -- hooks -----------------------------------------------------------------------------

    def health(self) -> bool:
        """True once the emulator answers."""
        return self._call("GET", "health").get("ok") is True

    def now(self) -> int:
        """The emulator's current unix time."""
        return _as_int(self._call("GET", "now")["now"])

    def state(self) -> dict[str, object]:
        """Requests log, counters, grants, pending user codes, faults and options."""
        return self._call("GET", "state")

    def approve(self, user_code: str, user: str = "alice") -> None:
        """The user allows the app for this code."""
        self._call("POST", "approve", {"user_code": user_code, "user": user})

    def deny(self, user_code: str) -> None:
        """The user refuses the app for this code."""
        self._call("POST", "deny", {"user_code": user_code})

    def advance_clock(self, seconds: float) -> None:
        """Jump the emulator's clock forward."""
        self._call("POST", "advance_clock", {"seconds": seconds})

    def set_ttl(self, seconds: int) -> None:
        """Access-token lifetime for tokens issued from now on."""
        self._call("POST", "set_ttl", {"seconds": seconds})

    def configure(self, **options: object) -> None:
        """Change any emulator option."""
        self._call("POST", "configure", options)

    def add_fault(self, fault: Mapping[str, object]) -> dict[str, object]:
        """Queue a one-shot fault; returns it with defaults filled in."""
        return self._call("POST", "add_fault", fault)

    def clear_faults(self) -> None:
        """Drop every queued fault."""
        self._call("POST", "clear_faults")

    def expire_access(self, user: str) -> int:
        """Expire the user's access tokens; returns the number of grants touched."""
        return _as_int(self._call("POST", "expire_access", {"user": user})["result"])

    def revoke_grant(self, user: str) -> int:
        """The user removes the app; returns the number of grants revoked."""
        return _as_int(self._call("POST", "revoke_grant", {"user": user})["result"])

    def mark_legacy(self, refresh_token: str) -> None:
        """Make a refresh token pre-migration."""
        self._call("POST", "mark_legacy", {"refresh_token": refresh_token})

    def lock_user(self, user: str, locked: bool = True) -> None:
        """Make the probe endpoint answer 423 for this user (or stop doing so)."""
        self._call("POST", "lock_user", {"user": user, "locked": locked})

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
        """Plant a grant with known tokens and times."""
        return self._call(
            "POST",
            "seed_grant",
            {
                "user": user,
                "access_token": access_token,
                "refresh_token": refresh_token,
                "created_at": created_at,
                "expires_in": expires_in,
                "client_id": client_id,
            },
        )

    def authorize(
        self,
        user: str,
        redirect_uri: str,
        code_challenge: str | None = None,
        *,
        client_id: str | None = None,
    ) -> str:
        """An authorization code for the user, as the browser redirect would deliver it."""
        result = self._call(
            "POST",
            "authorize",
            {
                "user": user,
                "redirect_uri": redirect_uri,
                "code_challenge": code_challenge,
                "client_id": client_id,
            },
        )
        return str(result["code"])

    def add_client(self, client_id: str, client_secret: str | None) -> None:
        """Register another app."""
        self._call("POST", "add_client", {"client_id": client_id, "client_secret": client_secret})

    def reset(self) -> None:
        """Forget grants, codes, counters, the log and queued faults."""
        self._call("POST", "reset")

    def wait_for_user_code(self, timeout: float = 10.0) -> str:
        """Block until a device login is pending and return its user code."""
        result = self._call(
            "POST", "wait_for_user_code", {"timeout": timeout}, timeout=timeout + self.timeout
        )
        return str(result["user_code"])

    # -- transport -------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        hook: str,
        payload: Mapping[str, object] | None = None,
        timeout: float | None = None,
    ) -> dict[str, object]:
        data = json.dumps(dict(payload or {})).encode("utf-8") if method == "POST" else None
        request = urllib.request.Request(  # noqa: S310  (scheme checked in __init__)
            f"{self.url}/_emulator/{hook}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json", "User-Agent": "trakt-emulator-control"},
        )
        try:
            with urllib.request.urlopen(  # noqa: S310  (scheme checked in __init__)
                request, timeout=timeout or self.timeout
            ) as response:
                return _object(response.read())
        except urllib.error.HTTPError as exc:
            try:
                body = exc.read()
            except http.client.HTTPException:
                body = b""  # the server went away mid-answer (e.g. stopped during a wait)
            message = str(_object(body).get("error", exc.reason))
            exc.close()
            if exc.code == 404:
                raise KeyError(message) from None
            if exc.code == 400:
                raise ValueError(message) from None
            if exc.code == 408:
                raise TimeoutError(message) from None
            raise EmulatorControlError(exc.code, message) from None


def _object(raw: bytes) -> dict[str, object]:
    try:
        value: object = json.loads(raw.decode("utf-8"))
    except ValueError:
        return {}
    return {str(k): v for k, v in value.items()} if isinstance(value, dict) else {}


def _as_int(value: object) -> int:
    if not isinstance(value, int):
        raise EmulatorControlError(200, f"expected an integer, got {value!r}")
    return value
