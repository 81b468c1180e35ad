"""Proves the KeyringSession harness is a real, isolated Secret Service.

Keyring calls run in subprocesses with ``session.env``, the way the daemon will run, so
the test process's own keyring state cannot mask a broken environment.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import keyring
import keyring.backends.SecretService
import pytest

from tests.support.keyring_fixtures import SERVICE
from tests.support.keyring_session import (
    REMOVED_ENV_KEYS,
    KeyringSession,
    applied,
    no_bus_env,
    processes_with_home,
)

pytestmark = pytest.mark.keyring

SECRET_SERVICE_BACKEND = "keyring.backends.SecretService.Keyring"
# Runs one keyring operation and reports the outcome as JSON; the secret comes on stdin
# so it never appears in argv.
_KEYRING_SCRIPT = """
import json, sys
import keyring
op, service, username = sys.argv[1:4]
out = {}
try:
    backend = keyring.get_keyring()
    out["backend"] = f"{type(backend).__module__}.{type(backend).__qualname__}"
    if op == "set":
        keyring.set_password(service, username, sys.stdin.read())
    else:
        out["value"] = keyring.get_password(service, username)
except Exception as exc:
    out["error"] = f"{type(exc).__module__}.{type(exc).__qualname__}"
print(json.dumps(out))
"""


def run_keyring(
    env: dict[str, str], op: str, username: str, secret: str = "", service: str = SERVICE
) -> dict[str, Any]:
    """Run a keyring ``get`` or ``set`` in a fresh interpreter and return its JSON report."""
    result = subprocess.run(
        [sys.executable, "-c", _KEYRING_SCRIPT, op, service, username],
        env=env,
        input=secret,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def real_home_keyrings() -> Path:
    """Return the developer's real keyring directory, independent of $HOME."""
    return Path(pwd.getpwuid(os.getuid()).pw_dir) / ".local" / "share" / "keyrings"


def snapshot(directory: Path) -> dict[str, tuple[int, int]] | None:
    """Return name -> (size, mtime_ns) for the files in ``directory``, or None if absent."""
    if not directory.exists():
        return None
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in directory.iterdir()}


def test_env_is_isolated(clean_keyring: KeyringSession) -> None:
    """The subprocess environment points only into the temporary HOME and cannot prompt."""
    env = clean_keyring.env
    home = clean_keyring.home
    for key in ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_RUNTIME_DIR"):
        assert Path(env[key]).is_relative_to(home), key
    assert env["HOME"] == str(home)
    assert env["DBUS_SESSION_BUS_ADDRESS"].startswith(f"unix:path={home}/")
    assert stat.S_IMODE(Path(env["XDG_RUNTIME_DIR"]).stat().st_mode) == 0o700
    for key in ("DISPLAY", "WAYLAND_DISPLAY", "PYTHON_KEYRING_BACKEND"):
        assert key in REMOVED_ENV_KEYS
        assert key not in env
    assert clean_keyring.password not in repr(clean_keyring)


def test_python_keyring_roundtrips_5000_char_secret(clean_keyring: KeyringSession) -> None:
    """python-keyring stores and reads back a 5000-character secret via SecretService."""
    secret = secrets.token_urlsafe(3750)
    assert len(secret) == 5000

    stored = run_keyring(clean_keyring.env, "set", "alice", secret)
    read = run_keyring(clean_keyring.env, "get", "alice")

    assert stored == {"backend": SECRET_SERVICE_BACKEND}
    assert read["backend"] == SECRET_SERVICE_BACKEND
    assert read["value"] == secret


def test_secret_tool_interoperates_with_python_keyring(clean_keyring: KeyringSession) -> None:
    """secret-tool reads what keyring wrote, and keyring reads what secret-tool wrote."""
    run_keyring(clean_keyring.env, "set", "alice", "RT-from-keyring")
    clean_keyring.store(SERVICE, "bob", "RT-from-secret-tool")

    assert clean_keyring.lookup(SERVICE, "alice") == "RT-from-keyring"
    assert run_keyring(clean_keyring.env, "get", "bob")["value"] == "RT-from-secret-tool"
    assert clean_keyring.lookup(SERVICE, "nobody") is None

    clean_keyring.store(SERVICE, "alice", "RT-replaced")
    assert run_keyring(clean_keyring.env, "get", "alice")["value"] == "RT-replaced"

    clean_keyring.clear(SERVICE)
    assert clean_keyring.lookup(SERVICE, "alice") is None
    assert clean_keyring.lookup(SERVICE, "bob") is None


def test_lock_makes_keyring_raise_keyring_locked_quickly(clean_keyring: KeyringSession) -> None:
    """After lock(), a keyring get fails with KeyringLocked instead of waiting on a prompt."""
    clean_keyring.store(SERVICE, "alice", "RT-1")
    clean_keyring.lock()

    report = run_keyring(clean_keyring.env, "get", "alice")

    assert clean_keyring.is_locked()
    assert report["error"] == "keyring.errors.KeyringLocked"


def test_unlock_restores_access(clean_keyring: KeyringSession) -> None:
    """unlock() with the session password makes the stored secret readable again."""
    clean_keyring.store(SERVICE, "alice", "RT-1")
    clean_keyring.lock()
    clean_keyring.unlock()

    assert not clean_keyring.is_locked()
    assert run_keyring(clean_keyring.env, "get", "alice")["value"] == "RT-1"


def test_applied_routes_in_process_keyring_to_the_session(
    clean_keyring: KeyringSession,
) -> None:
    """applied(env) points in-process keyring calls at the session and restores afterwards."""
    environ_before = dict(os.environ)

    with applied(clean_keyring.env):
        assert isinstance(keyring.get_keyring(), keyring.backends.SecretService.Keyring)
        keyring.set_password(SERVICE, "carol", "RT-in-process")
        assert keyring.get_password(SERVICE, "carol") == "RT-in-process"

    assert dict(os.environ) == environ_before
    assert clean_keyring.lookup(SERVICE, "carol") == "RT-in-process"


@pytest.mark.parametrize("use_tmp_home", [True, False], ids=["tmp-home", "default-home"])
def test_no_bus_env_raises_no_keyring_error(tmp_path: Path, *, use_tmp_home: bool) -> None:
    """With no session bus at all, keyring falls back to fail.Keyring and raises."""
    env = no_bus_env(tmp_path if use_tmp_home else None)
    assert "DBUS_SESSION_BUS_ADDRESS" not in env

    report = run_keyring(env, "get", "alice")

    assert report["backend"] == "keyring.backends.fail.Keyring"
    assert report["error"] == "keyring.errors.NoKeyringError"


def test_bus_without_secret_service_raises_no_keyring_error() -> None:
    """A bus with nothing owning (or activating) org.freedesktop.secrets means NoKeyringError."""
    with KeyringSession(secret_service=False) as bare:
        report = run_keyring(bare.env, "get", "alice")

    assert report["backend"] == "keyring.backends.fail.Keyring"
    assert report["error"] == "keyring.errors.NoKeyringError"


def test_session_started_locked_raises_keyring_locked() -> None:
    """start_locked=True gives a running daemon whose collection is locked."""
    with KeyringSession(start_locked=True) as locked:
        assert locked.is_locked()
        report = run_keyring(locked.env, "get", "alice")

    assert report["backend"] == SECRET_SERVICE_BACKEND
    assert report["error"] == "keyring.errors.KeyringLocked"


def test_stop_leaves_no_process_behind() -> None:
    """stop() kills dbus-daemon and gnome-keyring-daemon and deletes the temporary HOME."""
    session = KeyringSession().start()
    home = session.home
    pids = session.pids
    assert len(pids) == 2
    run_keyring(session.env, "set", "alice", "RT-1")

    session.stop()

    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert processes_with_home(home) == []
    assert not home.exists()
    session.stop()  # idempotent


def test_real_home_keyring_is_untouched(clean_keyring: KeyringSession) -> None:
    """Items land in the temporary HOME's keyring file, never in the developer's."""
    real = real_home_keyrings()
    before = snapshot(real)

    run_keyring(clean_keyring.env, "set", "alice", "RT-1")
    clean_keyring.lock()
    clean_keyring.unlock()

    assert snapshot(real) == before
    private = Path(clean_keyring.env["XDG_DATA_HOME"]) / "keyrings" / "login.keyring"
    assert private.is_file()
    assert private.parent != real
