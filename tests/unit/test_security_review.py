"""Regression tests for issue 13's security review: each reproduces one attack.

Another local user is played by a shared sticky directory (mode 1777, as ``/tmp``) and, where
the tests run as root, by files chowned to ``nobody``.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import json
import os
import socket
import subprocess
import sys
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tvmaniac_refreshd.core.errors import (
    RefreshdError,
    TransientError,
    UnsafeLocation,
    UsageError,
)
from tvmaniac_refreshd.daemon import instance
from tvmaniac_refreshd.providers.http import Response, error_code, post, raise_for_failure
from tvmaniac_refreshd.service.base import ServiceMode
from tvmaniac_refreshd.service.launchd import render as render_plist
from tvmaniac_refreshd.service.systemd import UNITS, render
from tvmaniac_refreshd.storage.layout import Layout
from tvmaniac_refreshd.storage.locks import account_lock
from tvmaniac_refreshd.storage.session_bus import adopt_session_bus
from tvmaniac_refreshd.storage.state import AccountRecord, RefreshResult, StateFiles

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
        environ = {"XDG_RUNTIME_DIR": str(runtime), "HOME": str(tmp_path)}

        assert not Layout.of(environ, "linux").locks.is_relative_to(runtime)

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
            pytest.raises(UnsafeLocation, match="writable by other users"),
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
            StateFiles(state).update("default", last_result=RefreshResult.REFRESHED)

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
            environ = {"XDG_RUNTIME_DIR": str(runtime), "HOME": str(tmp_path)}
            with account_lock(Layout.of(environ, "linux").locks, "default", timeout=0.2):
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

        with pytest.raises(UnsafeLocation, match="not to this user"):
            StateFiles(state).save("default", AccountRecord(last_result=RefreshResult.REFRESHED))
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
    def test_a_plist_refuses_control_characters(self, mode: ServiceMode, tmp_path: Path) -> None:
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
    # Asked from another process: a record lock is never reported to its own holder.
    ask = [
        sys.executable,
        "-c",
        "import sys; from pathlib import Path; from tvmaniac_refreshd.daemon import instance; "
        "print(instance.running_pid(Path(sys.argv[1])))",
        str(path),
    ]
    with instance.hold(path) as held:
        assert held
        assert subprocess.run(ask, capture_output=True, text=True, check=True).stdout == (
            f"{os.getpid()}\n"
        )
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


class TestServerText:
    """Finding 5: an error body with terminal escapes and a fake "all good" line."""

    def response(self, error: str) -> Response:
        body = json.dumps({"error": error}).encode()
        return Response(400, httpx.Headers({"content-type": "application/json"}), body)

    def test_an_error_code_with_control_characters_is_not_repeated(self) -> None:
        hostile = "x\x1b[2K\r\x1b[32mtvmaniac-refreshd: all good, token refreshed\x1b[0m"
        with pytest.raises(RefreshdError) as caught:
            raise_for_failure(self.response(hostile), what="refreshing the token", now=0)

        assert "\x1b" not in str(caught.value)
        assert "all good" not in str(caught.value)
        assert error_code(self.response(hostile)) is None

    def test_an_overlong_error_code_is_not_repeated(self) -> None:
        assert error_code(self.response("e" * 65)) is None
        assert error_code(self.response("invalid_request")) == "invalid_request"


class TestCompressedAnswers:
    """Finding 8: the 64 KiB cap was checked after decompression."""

    def bomb(self) -> bytes:
        return gzip.compress(b"\0" * (64 * 1024 * 1024), compresslevel=9)

    def test_the_answer_is_asked_for_and_read_uncompressed(self) -> None:
        seen: list[httpx.Request] = []
        bomb = self.bomb()

        def answer(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            return httpx.Response(
                200,
                headers={"content-encoding": "gzip", "content-type": "application/json"},
                stream=httpx.ByteStream(bomb),
            )

        client = httpx.Client(transport=httpx.MockTransport(answer))
        tracemalloc.start()
        try:
            with pytest.raises(TransientError, match="compressed"):
                post(client, "https://idp.example/token", what="refreshing", form={"a": "b"})
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()

        assert seen[0].headers["accept-encoding"] == "identity"
        # The 64 MiB the body inflates to were never made; what was read is the raw body.
        assert peak < 8 * 1024 * 1024


def test_a_process_of_ours_cannot_dump_core() -> None:
    """Finding 9: nothing turned core dumps off, and a dump holds every token."""
    script = (
        "import ctypes, resource, sys\n"
        "from tvmaniac_refreshd.entry import main\n"
        "sys.argv = ['tvmaniac-refreshd', '--version']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(resource.getrlimit(resource.RLIMIT_CORE), ctypes.CDLL(None).prctl(3, 0, 0, 0, 0))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )

    assert result.stdout.splitlines()[-1] == "(0, 0) 0"


@pytest.mark.parametrize("name", [unit for units in UNITS.values() for unit in units])
def test_the_units_forbid_core_dumps(name: str) -> None:
    if name.endswith(".service"):
        assert "\nLimitCORE=0\n" in render(name, ("/usr/bin/python3",)).decode()
