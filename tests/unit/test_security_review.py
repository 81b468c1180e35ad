"""Regression tests for issue 13's security review: each reproduces one attack.

Another local user is played by a shared sticky directory (mode 1777, as ``/tmp``) and, where
the tests run as root, by files chowned to ``nobody``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tvmaniac_refreshd.core.errors import TransientError, UnsafeLocation, UsageError
from tvmaniac_refreshd.core.locations import adopt_session_bus
from tvmaniac_refreshd.daemon import instance
from tvmaniac_refreshd.service.launchd import render as render_plist
from tvmaniac_refreshd.service.systemd import UNITS, render
from tvmaniac_refreshd.storage.keyring_store import account_lock
from tvmaniac_refreshd.storage.paths import lock_dir
from tvmaniac_refreshd.storage.state import AccountRecord, StateFiles

NOBODY = 65534
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="playing another user takes chown")


def shared_tmp(path: Path) -> Path:
    """Return ``path`` made like /tmp: everyone may create files in it."""
    path.mkdir()
    path.chmod(0o1777)
    return path


def bind_socket(path: Path) -> None:
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.close()


class TestRuntimeDirOfOthers:
    """Finding 2: ``$XDG_RUNTIME_DIR`` pointing at a shared directory (e.g. ``/tmp``)."""

    def test_a_bus_in_a_shared_directory_is_not_adopted(self, tmp_path: Path) -> None:
        """Another user's dbus-daemon at /tmp/bus would receive our client secret."""
        runtime = shared_tmp(tmp_path / "tmp")
        bind_socket(runtime / "bus")
        environ = {"XDG_RUNTIME_DIR": str(runtime)}
        adopt_session_bus(environ)

        assert "DBUS_SESSION_BUS_ADDRESS" not in environ

    @as_root
    def test_a_bus_socket_of_another_user_is_not_adopted(self, tmp_path: Path) -> None:
        runtime = tmp_path / "run"
        runtime.mkdir(mode=0o700)
        bind_socket(runtime / "bus")
        os.chown(runtime / "bus", NOBODY, NOBODY)
        environ = {"XDG_RUNTIME_DIR": str(runtime)}
        adopt_session_bus(environ)

        assert "DBUS_SESSION_BUS_ADDRESS" not in environ

    def test_a_link_or_a_file_named_bus_is_not_adopted(self, tmp_path: Path) -> None:
        runtime = tmp_path / "run"
        runtime.mkdir(mode=0o700)
        bind_socket(tmp_path / "elsewhere")
        (runtime / "bus").symlink_to(tmp_path / "elsewhere")
        environ = {"XDG_RUNTIME_DIR": str(runtime)}
        adopt_session_bus(environ)

        assert "DBUS_SESSION_BUS_ADDRESS" not in environ

    def test_locks_move_away_from_a_shared_runtime_dir(self, tmp_path: Path) -> None:
        runtime = shared_tmp(tmp_path / "tmp")
        environ = {"XDG_RUNTIME_DIR": str(runtime), "XDG_STATE_HOME": str(tmp_path / "state")}

        assert not lock_dir(environ, "linux").is_relative_to(runtime)

    def test_a_planted_link_is_never_followed_nor_truncated(self, tmp_path: Path) -> None:
        """A pre-made 0777 directory with ``default.lock`` linked to the victim's ~/.bashrc."""
        victim = tmp_path / "bashrc"
        victim.write_text("export PATH=...\n")
        planted = tmp_path / "tmp" / "tvmaniac-refreshd"
        planted.mkdir(parents=True)
        planted.chmod(0o777)
        (planted / "default.lock").symlink_to(victim)
        (planted / "daemon-x.pid").symlink_to(victim)

        with (
            pytest.raises(UnsafeLocation, match="writable by group or others"),
            account_lock(planted, "default", timeout=1),
        ):
            pass
        with pytest.raises(UnsafeLocation), instance.hold(planted / "daemon-x.pid"):
            pass

        assert victim.read_text() == "export PATH=...\n"

    def test_a_link_in_our_own_directory_is_not_followed(self, tmp_path: Path) -> None:
        victim = tmp_path / "bashrc"
        victim.write_text("export PATH=...\n")
        state = tmp_path / "state"
        state.mkdir(mode=0o700)
        (state / "daemon-x.pid").symlink_to(victim)
        (state / ".default.lock").symlink_to(victim)

        with (
            pytest.raises(UnsafeLocation, match="symbolic link"),
            instance.hold(state / "daemon-x.pid"),
        ):
            pass
        with pytest.raises(UnsafeLocation, match="symbolic link"):
            StateFiles(state).update("default", last_result="refreshed")

        assert victim.read_text() == "export PATH=...\n"

    def test_a_foreign_flock_does_not_block_us(self, tmp_path: Path) -> None:
        """A world-writable lock file someone else holds made `logout` wait and exit 75."""
        runtime = shared_tmp(tmp_path / "tmp")
        planted = runtime / "tvmaniac-refreshd"
        planted.mkdir(mode=0o777)
        planted.chmod(0o777)
        (planted / "default.lock").touch(mode=0o666)
        holder = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import fcntl, sys; f = open(sys.argv[1]); fcntl.flock(f, fcntl.LOCK_EX); "
                "print('held', flush=True); sys.stdin.read()",
                str(planted / "default.lock"),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline() == "held\n"
            environ = {"XDG_RUNTIME_DIR": str(runtime), "XDG_STATE_HOME": str(tmp_path / "s")}
            with account_lock(lock_dir(environ, "linux"), "default", timeout=0.2):
                pass
        finally:
            holder.kill()
            holder.communicate()

    @as_root
    def test_a_directory_of_another_user_is_refused(self, tmp_path: Path) -> None:
        """``mkdir`` of an existing directory succeeds: ownership is checked after it."""
        state = tmp_path / "state"
        state.mkdir(mode=0o700)
        os.chown(state, NOBODY, NOBODY)

        with pytest.raises(UnsafeLocation, match="another user"):
            StateFiles(state).save("default", AccountRecord(last_result="refreshed"))
        assert list(state.iterdir()) == []

    @as_root
    def test_a_file_of_another_user_is_refused(self, tmp_path: Path) -> None:
        state = tmp_path / "state"
        state.mkdir(mode=0o700)
        (state / "default.lock").touch(mode=0o666)
        os.chown(state / "default.lock", NOBODY, NOBODY)

        with (
            pytest.raises(UnsafeLocation, match="not a regular file of this user"),
            account_lock(state, "default", timeout=1),
        ):
            pass


class TestRenderedValues:
    """Finding 6: a newline in --config injected an ``ExecStart=`` line into the unit."""

    ARGV = ("/usr/bin/python3", "-m", "tvmaniac_refreshd", "--config", "/a\nExecStart=/bin/evil")

    @pytest.mark.parametrize("name", [unit for units in UNITS.values() for unit in units])
    def test_a_unit_refuses_control_characters(self, name: str) -> None:
        with pytest.raises(UsageError, match="U\\+000A"):
            render(name, self.ARGV)

    @pytest.mark.parametrize("mode", ["daemon", "timer"])
    def test_a_plist_refuses_control_characters(self, mode: str, tmp_path: Path) -> None:
        with pytest.raises(UsageError, match="control characters"):
            render_plist(mode, ("/usr/bin/python3", "--config", "/a\x1b[2Jb"), tmp_path)

    def test_an_ordinary_path_still_renders(self) -> None:
        argv = ("/usr/bin/python3", "--config", "/a b")
        text = render("tvmaniac-refreshd.service", argv).decode()
        assert text.count("\nExecStart=") == 1


@contextlib.contextmanager
def flock_held(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def test_the_instance_lock_still_reports_its_holder(tmp_path: Path) -> None:
    """The helpers keep what instance.py did: the holder's PID, and None when nobody holds."""
    path = tmp_path / "state" / "daemon-x.pid"
    with instance.hold(path) as held:
        assert held
        assert instance.running_pid(path) == os.getpid()
    assert instance.running_pid(path) is None


def test_the_account_lock_still_times_out(tmp_path: Path) -> None:
    tmp_path.chmod(0o700)
    # flock locks are per open file description: account_lock's own open is another holder.
    with (
        flock_held(tmp_path / "default.lock"),
        pytest.raises(TransientError),
        account_lock(tmp_path, "default", timeout=0.05),
    ):
        pass
