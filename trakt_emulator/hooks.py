"""The HTTP control API under /_emulator/: test hooks (E9) for tests that run us as a process."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING

from trakt_emulator.replies import Reply, json_reply

if TYPE_CHECKING:
    from trakt_emulator.emulator import Emulator

_MISSING = object()


class _Args:
    """Typed access to a hook's JSON arguments; a bad one becomes a 400."""

    def __init__(self, data: dict[str, object]) -> None:
        self.data = data

    def text(self, key: str, default: object = _MISSING) -> str:
        value = self.data.get(key, default)
        if value is _MISSING:
            raise ValueError(f"missing argument {key!r}")
        if not isinstance(value, str):
            raise TypeError(f"argument {key!r} must be a string")
        return value

    def opt_text(self, key: str) -> str | None:
        return None if self.data.get(key) is None else self.text(key)

    def number(self, key: str) -> float:
        value = self.data.get(key)
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise TypeError(f"argument {key!r} must be a number")
        return float(value)

    def opt_int(self, key: str) -> int | None:
        value = self.data.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise TypeError(f"argument {key!r} must be an integer")
        return value

    def flag(self, key: str, default: bool) -> bool:
        value = self.data.get(key, default)
        if not isinstance(value, bool):
            raise TypeError(f"argument {key!r} must be a boolean")
        return value


Hook = Callable[["Emulator", _Args], object]

_HOOKS: dict[str, tuple[str, Hook]] = {
    "health": ("GET", lambda emu, args: {"ok": True}),
    "now": ("GET", lambda emu, args: {"now": emu.now()}),
    "state": ("GET", lambda emu, args: emu.state()),
    "approve": (
        "POST",
        lambda emu, args: emu.approve(args.text("user_code"), args.text("user", "alice")),
    ),
    "deny": ("POST", lambda emu, args: emu.deny(args.text("user_code"))),
    "advance_clock": ("POST", lambda emu, args: emu.advance_clock(args.number("seconds"))),
    "set_ttl": ("POST", lambda emu, args: emu.set_ttl(int(args.number("seconds")))),
    "configure": ("POST", lambda emu, args: emu.configure(**args.data)),
    "add_fault": ("POST", lambda emu, args: emu.add_fault(args.data)),
    "clear_faults": ("POST", lambda emu, args: emu.clear_faults()),
    "expire_access": ("POST", lambda emu, args: emu.expire_access(args.text("user"))),
    "revoke_grant": ("POST", lambda emu, args: emu.revoke_grant(args.text("user"))),
    "mark_legacy": ("POST", lambda emu, args: emu.mark_legacy(args.text("refresh_token"))),
    "lock_user": (
        "POST",
        lambda emu, args: emu.lock_user(args.text("user"), locked=args.flag("locked", True)),
    ),
    "seed_grant": (
        "POST",
        lambda emu, args: emu.seed_grant(
            args.text("user"),
            args.opt_text("access_token"),
            args.opt_text("refresh_token"),
            args.opt_int("created_at"),
            args.opt_int("expires_in"),
            client_id=args.opt_text("client_id"),
        ),
    ),
    "authorize": (
        "POST",
        lambda emu, args: {
            "code": emu.authorize(
                args.text("user"),
                args.text("redirect_uri"),
                args.opt_text("code_challenge"),
                client_id=args.opt_text("client_id"),
            )
        },
    ),
    "add_client": (
        "POST",
        lambda emu, args: emu.add_client(args.text("client_id"), args.opt_text("client_secret")),
    ),
    "reset": ("POST", lambda emu, args: emu.reset()),
    "wait_for_user_code": (
        "POST",
        lambda emu, args: {
            "user_code": emu.wait_for_user_code(
                args.number("timeout") if "timeout" in args.data else 10.0
            )
        },
    ),
}


class _HookError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def dispatcher(emulator: Emulator) -> Callable[[str, str, bytes], Reply]:
    """Bind the control API to one emulator."""

    def dispatch(method: str, path: str, body: bytes) -> Reply:
        try:
            result = _run(emulator, method, path, body)
        except _HookError as exc:
            return _error(exc.status, str(exc))
        except KeyError as exc:
            return _error(404, str(exc.args[0]) if exc.args else "not found")
        except TimeoutError as exc:
            return _error(408, str(exc))
        except (TypeError, ValueError) as exc:
            return _error(400, str(exc))
        if not isinstance(result, dict):
            result = {} if result is None else {"result": result}
        return json_reply(200, result, app=False)

    return dispatch


def _run(emulator: Emulator, method: str, path: str, body: bytes) -> object:
    name = path.removeprefix("/_emulator/").strip("/")
    hook = _HOOKS.get(name)
    if hook is None:
        raise _HookError(404, f"unknown hook {name!r}; known: {', '.join(sorted(_HOOKS))}")
    if method != hook[0]:
        raise _HookError(405, f"{name} needs {hook[0]}")
    try:
        data: object = json.loads(body.decode("utf-8")) if body.strip() else {}
    except ValueError:
        raise _HookError(400, "body is not JSON") from None
    if not isinstance(data, dict):
        raise _HookError(400, "body must be a JSON object")
    return hook[1](emulator, _Args({str(key): value for key, value in data.items()}))


def _error(status: int, message: str) -> Reply:
    return json_reply(status, {"error": message}, app=False)
