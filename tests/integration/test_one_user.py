"""One lock and one state per user, whatever the caller's environment; hostile state
directories; a stale daemon PID (issue 22).

Through the real command, the real keyring (a private gnome-keyring) and the emulator. A caller
without ``XDG_RUNTIME_DIR`` or a bus address (cron's ``env -i``, the unit's environment) finds
the bus where logind puts it, ``/run/user/<uid>/bus``: here a private mount namespace binds the
keyring session's runtime directory there (the suite runs as root, as CI does).
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.harness import Harness

LIFETIME = 604800
DUE_AGE = 0.8 * LIFETIME  # past the refresh threshold, still valid
APP = "tvmaniac-refreshd"
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="a mount namespace takes root")


def refreshes(harness: Harness) -> list[str]:
    """The refresh tokens the emulator received, in order."""
    sent = []
    for request in harness.emulator.requests("/oauth/token"):
        body = request["body"]
        if isinstance(body, dict) and body.get("grant_type") == "refresh_token":
            sent.append(str(body.get("refresh_token")))
    return sent


def in_usual_runtime_dir(harness: Harness, argv: list[str]) -> list[str]:
    """Return ``argv`` run with the keyring session's runtime directory at /run/user/<uid>."""
    runtime = harness.keyring.home / "run"
    uid = os.geteuid()
    script = (
        "set -e; mount -t tmpfs -o mode=0755 tmpfs /run/user; "
        f"mkdir -m 0700 /run/user/{uid}; mount --bind {shlex.quote(str(runtime))} /run/user/{uid}; "
        'exec "$@"'
    )
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *argv]


@pytest.fixture
def shared_config(harness: Harness) -> Harness:
    """The config at its default place under HOME, where every caller (cron too) finds it."""
    place = harness.root / ".config" / APP / "config.toml"
    place.parent.mkdir(parents=True, mode=0o700)
    # The provider's 3 s must stay well inside the read timeout on a loaded machine: a lost
    # response is a different story (the refresh token spent, the answer never read).
    text = harness.config_path.read_text()
    text = text.replace('read_timeout = "3s"', 'read_timeout = "60s"')
    text = text.replace('lock_timeout = "30s"', 'lock_timeout = "120s"')
    assert 'read_timeout = "60s"' in text
    assert 'lock_timeout = "120s"' in text
    place.write_text(text)
    place.chmod(0o600)
    return harness


def environments(harness: Harness) -> dict[str, tuple[list[str], dict[str, str]]]:
    """Each caller: a command prefix and its environment."""
    shell = harness.env()
    for variable in ("TVMANIAC_REFRESHD_CONFIG", "XDG_CONFIG_HOME"):
        shell.pop(variable)
    without_runtime = {k: v for k, v in shell.items() if k != "XDG_RUNTIME_DIR"}
    no_bus = {k: v for k, v in shell.items() if k != "DBUS_SESSION_BUS_ADDRESS"}
    no_bus["XDG_RUNTIME_DIR"] = str(harness.keyring.home / "run")  # the bus at its usual place
    cron = {"HOME": str(harness.root), "PATH": "/usr/bin:/bin"}
    elsewhere = {**shell, "TZ": "Asia/Tokyo", "LANG": "de_DE.UTF-8", "LC_ALL": "de_DE.UTF-8"}
    uid = os.geteuid()
    unit = {
        "HOME": str(harness.root),
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "USER": "root",
        "LOGNAME": "root",
        "XDG_RUNTIME_DIR": f"/run/user/{uid}",
        "DBUS_SESSION_BUS_ADDRESS": f"unix:path=/run/user/{uid}/bus",
        "PYTHONUNBUFFERED": "1",
        "INVOCATION_ID": "0" * 32,
    }
    if "PYTHONPATH" in shell:
        cron["PYTHONPATH"] = unit["PYTHONPATH"] = shell["PYTHONPATH"]
    usual = in_usual_runtime_dir(harness, [])
    return {
        "shell": ([], shell),
        "no XDG_RUNTIME_DIR": ([], without_runtime),
        "no bus address": ([], no_bus),
        "cron env -i": ([*usual, "env", "-i"], cron),
        "TZ and LANG": ([], elsewhere),
        "the unit's environment": ([*usual, "env", "-i"], unit),
    }


@as_root
def test_many_callers_one_refresh(shared_config: Harness) -> None:
    """Concurrent `token` and `refresh` calls from six environments: one refresh, one token."""
    harness = shared_config
    grant = harness.seed(age=DUE_AGE)
    harness.emulator.add_fault({"kind": "delay", "seconds": 3, "path": "/oauth/token"})
    started = []
    for name, (prefix, env) in environments(harness).items():
        for verb in ("token", "refresh"):
            argv = [*prefix, *([f"{k}={v}" for k, v in env.items()] if prefix else [])]
            command = [*argv, *harness.command(verb)]
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env if not prefix else {"PATH": os.environ["PATH"]},
            )
            started.append((name, verb, process))
    results = []
    for name, verb, process in started:
        out, err = process.communicate(timeout=120)
        results.append((name, verb, process.returncode, out, err))

    assert [(n, v, code) for n, v, code, _, _ in results if code != 0] == [], results
    assert refreshes(harness) == [grant["refresh_token"]]  # spent exactly once
    current = harness.emulator.state()["grants"][0]  # type: ignore[index]
    assert current["access_token"] != grant["access_token"]
    printed = {out for _, verb, _, out, _ in results if verb == "token"}
    assert printed == {f"{current['access_token']}\n"}


# -- hostile state directories ---------------------------------------------------------------


def pid_file(harness: Harness) -> Path:
    """The daemon's PID file for the harness's config (spelled out: the test predates the
    layout module and runs against older code too)."""
    digest = hashlib.sha256(os.path.realpath(harness.config_path).encode()).hexdigest()[:12]
    return harness.state_dir / f"daemon-{digest}.pid"


def made_state_dir(harness: Harness) -> Path:
    harness.state_dir.mkdir(parents=True, mode=0o700)
    return harness.state_dir


def state_parent(harness: Harness) -> Path:
    parent = harness.root / ".local" / "state"
    parent.mkdir(parents=True, exist_ok=True)
    return parent


@pytest.mark.parametrize("verb", ["token", "refresh", "status"])
def test_a_world_writable_parent_gives_78_and_stores_nothing(harness: Harness, verb: str) -> None:
    harness.seed(age=DUE_AGE)
    parent = state_parent(harness)
    parent.chmod(0o777)
    run = harness.run(verb, timeout=60)

    assert run.code == 78, run
    assert str(parent) in run.err
    assert not harness.state_dir.exists()
    assert refreshes(harness) == []


@as_root
def test_a_foreign_parent_gives_78(harness: Harness) -> None:
    harness.seed(age=DUE_AGE)
    parent = state_parent(harness)
    os.chown(parent, 65534, 65534)
    run = harness.run("refresh", timeout=60)

    assert run.code == 78, run
    assert str(parent) in run.err
    assert "65534" in run.err
    assert refreshes(harness) == []


def test_login_checks_the_state_directory_before_the_device_flow(harness: Harness) -> None:
    state_parent(harness).chmod(0o777)
    run = harness.run("login", timeout=30)

    assert run.code == 78, run
    assert harness.emulator.requests("/oauth/device/code") == []
    assert harness.item_text("default") is None


def test_locks_renamed_during_a_refresh_cannot_split_the_lock(harness: Harness) -> None:
    """The owner of a writable parent renames ``locks/`` while a refresh holds its flock: a
    second refresh must not take a lock of its own and spend the same refresh token."""
    grant = harness.seed(age=DUE_AGE)
    made_state_dir(harness)
    state_parent(harness).chmod(0o777)
    harness.emulator.add_fault({"kind": "delay", "seconds": 3, "path": "/oauth/token"})
    # As cron has it: no XDG_RUNTIME_DIR, so older versions too kept the locks in the state dir.
    env = {k: v for k, v in harness.env().items() if k != "XDG_RUNTIME_DIR"}
    first = harness.spawn("refresh", "--force", env=env)
    deadline = time.monotonic() + 30
    while not refreshes(harness) and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # a bounded poll for the request to arrive, not a timing
    locks = harness.state_dir / "locks"
    if locks.exists():
        locks.rename(harness.state_dir / "moved-away")
    second = harness.run("refresh", "--force", timeout=60, env=env)
    first_run = harness.finish(first, ("refresh", "--force"))

    assert refreshes(harness).count(str(grant["refresh_token"])) <= 1
    assert 78 in (first_run.code, second.code), (first_run, second)


def test_fifos_hang_nothing(harness: Harness) -> None:
    """A FIFO at the quick record or the daemon's PID file: `token` and `status` answer."""
    grant = harness.seed()
    made_state_dir(harness)
    os.mkfifo(harness.state_dir / "_quick-token.json", 0o600)
    os.mkfifo(pid_file(harness), 0o600)
    token = harness.run("token", timeout=60)
    status = harness.run("status", timeout=60)

    assert (token.code, token.out) == (0, f"{grant['access_token']}\n"), token
    assert status.code in (0, 78), status


# -- the daemon's PID ------------------------------------------------------------------------


def test_a_stale_pid_is_never_signalled(harness: Harness) -> None:
    """The PID file names an unrelated process (a daemon killed by SIGKILL left it, and its
    PID was reused) while some process holds the file's flock (a new daemon that has not
    written its PID yet, or one in another PID namespace): `login`, `logout` and `refresh`
    tell no one, and the unrelated process, whose default action for SIGUSR1 is to end, lives.
    """
    harness.seed(age=DUE_AGE)
    made_state_dir(harness)
    path = pid_file(harness)
    innocent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    path.write_text(f"{innocent.pid}\n")
    path.chmod(0o600)
    script = (
        "import fcntl, sys; f = open(sys.argv[1]); fcntl.flock(f, fcntl.LOCK_EX); "
        "print('held', flush=True); sys.stdin.read()"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", script, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "held\n"
        assert harness.run("refresh").code == 0
        assert harness.run("logout").code == 0
        assert innocent.poll() is None, "an unrelated process was signalled"
    finally:
        holder.kill()
        holder.communicate()
        innocent.send_signal(signal.SIGKILL)
        innocent.wait()


def test_the_daemon_is_told_and_clears_its_pid(harness: Harness) -> None:
    harness.seed()
    daemon = harness.spawn("run")
    path = pid_file(harness)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (
        path.exists() and path.read_text().strip() == str(daemon.pid)
    ):
        time.sleep(0.05)
    status = harness.run("status", "--json")
    daemon.send_signal(signal.SIGTERM)
    harness.finish(daemon, ("run",))

    assert json.loads(status.out)["daemon"] == {"running": True, "pid": daemon.pid}, status
    assert path.read_text() == ""  # no PID outlives its daemon
