"""One storage layout (issue 22): one place per user, one safe-file policy, one failure count."""

from __future__ import annotations

import os
import pwd
import socket
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from tvmaniac_refreshd.core.errors import UnsafeLocation
from tvmaniac_refreshd.storage import layout
from tvmaniac_refreshd.storage.locks import account_lock, flocked
from tvmaniac_refreshd.storage.safe_files import (
    ensure_private_dir,
    is_private_dir,
    read_private_text,
)
from tvmaniac_refreshd.storage.session_bus import adopt_session_bus
from tvmaniac_refreshd.storage.state import StateFiles

NOBODY = 65534
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="playing another user takes chown")


def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


class TestOnePlacePerUser:
    def test_every_callers_environment_gives_one_state_directory(self, tmp_path: Path) -> None:
        """A shell, cron's env -i, the unit and a shell with XDG_* set agree."""
        own = str(home(tmp_path))
        callers = [
            {
                "HOME": own,
                "XDG_RUNTIME_DIR": str(tmp_path / "run"),
                "DBUS_SESSION_BUS_ADDRESS": "x",
            },
            {"HOME": own, "PATH": "/usr/bin:/bin"},
            {"HOME": own, "XDG_STATE_HOME": str(tmp_path / "elsewhere"), "TZ": "Asia/Tokyo"},
            {"HOME": own, "STATE_DIRECTORY": str(tmp_path / "unit"), "INVOCATION_ID": "0" * 32},
        ]
        places = {layout.state_directory(environ, "linux") for environ in callers}

        assert places == {f"{own}/.local/state/tvmaniac-refreshd"}
        lock = layout.Layout(places.pop()).account_lock("default")
        assert lock == Path(own, ".local/state/tvmaniac-refreshd/locks/default.lock")

    def test_without_home_the_password_database_decides(self) -> None:
        expected = pwd.getpwuid(os.geteuid()).pw_dir
        assert layout.home_directory({}) == expected

    @as_root
    def test_a_home_of_another_user_is_not_ours(self, tmp_path: Path) -> None:
        """`sudo -u` keeping the caller's HOME: the other user's own home is used."""
        foreign = home(tmp_path)
        os.chown(foreign, NOBODY, NOBODY)

        assert layout.home_directory({"HOME": str(foreign)}) == pwd.getpwuid(0).pw_dir

    def test_xdg_state_home_is_named_as_a_disagreement(self, tmp_path: Path) -> None:
        old = tmp_path / "xdg" / "tvmaniac-refreshd"
        old.mkdir(parents=True)
        environ = {"HOME": str(home(tmp_path)), "XDG_STATE_HOME": str(tmp_path / "xdg")}
        notes = layout.disagreements(environ, "linux")

        assert len(notes) == 1
        assert "XDG_STATE_HOME" in notes[0]
        assert f"move what you need from it into {layout.state_directory(environ)}" in notes[0]

    def test_xdg_config_home_is_named_for_cron_and_written_into_the_unit(
        self, tmp_path: Path
    ) -> None:
        """A shell's XDG_CONFIG_HOME finds a config that cron's env -i and the unit would not."""
        moved = tmp_path / "cfg" / "tvmaniac-refreshd" / "config.toml"
        moved.parent.mkdir(parents=True)
        moved.write_text("")
        environ = {"HOME": str(home(tmp_path)), "XDG_CONFIG_HOME": str(tmp_path / "cfg")}

        assert layout.config_elsewhere(environ, "linux") == str(moved)
        (note,) = layout.disagreements(environ, "linux")
        assert f"pass --config {moved}" in note
        assert f"{home(tmp_path)}/.config/tvmaniac-refreshd/config.toml" in note
        same = {**environ, "XDG_CONFIG_HOME": str(home(tmp_path) / ".config")}
        assert layout.config_elsewhere(same, "linux") is None

    @as_root
    def test_a_foreign_home_is_not_where_the_config_is_read(self, tmp_path: Path) -> None:
        """`sudo -u` keeping the caller's HOME reads its own config, as it keeps its own state."""
        foreign = home(tmp_path)
        os.chown(foreign, NOBODY, NOBODY)

        assert layout.config_file(None, {"HOME": str(foreign)}, "linux") == (
            f"{pwd.getpwuid(0).pw_dir}/.config/tvmaniac-refreshd/config.toml"
        )

    def test_one_caller_alone_has_nothing_to_say(self, tmp_path: Path) -> None:
        assert layout.disagreements({"HOME": str(home(tmp_path))}, "linux") == []


class TestTheWholeDirectoryIsChecked:
    def test_a_world_writable_parent_is_refused_before_anything_is_made(
        self, tmp_path: Path
    ) -> None:
        parent = tmp_path / "shared"
        parent.mkdir(mode=0o777)
        parent.chmod(0o777)

        with pytest.raises(UnsafeLocation, match=f"its parent {parent} is writable by other"):
            ensure_private_dir(parent / "state" / "tvmaniac-refreshd")
        assert list(parent.iterdir()) == []

    def test_a_sticky_parent_is_fine(self, tmp_path: Path) -> None:
        """A sticky parent's other users cannot move our entries: the state dir is ours."""
        parent = tmp_path / "tmp"
        parent.mkdir()
        parent.chmod(0o1777)

        ensure_private_dir(parent / "mine")
        assert is_private_dir(parent / "mine")

    @as_root
    def test_a_foreign_parent_is_refused(self, tmp_path: Path) -> None:
        parent = tmp_path / "state"
        parent.mkdir(mode=0o755)
        os.chown(parent, NOBODY, NOBODY)

        with pytest.raises(UnsafeLocation, match="belongs to uid 65534"):
            StateFiles(parent / "tvmaniac-refreshd").check()
        assert list(parent.iterdir()) == []

    def test_a_fifo_is_refused_at_once(self, tmp_path: Path) -> None:
        """Opened without blocking: a planted FIFO never holds up `token` or `status`."""
        directory = ensure_private_dir(tmp_path / "state")
        os.mkfifo(Path(directory) / "_quick-token.json", 0o600)

        with pytest.raises(UnsafeLocation, match="not a regular file"):
            read_private_text(Path(directory) / "_quick-token.json")

    def test_a_file_readable_by_others_is_refused(self, tmp_path: Path) -> None:
        directory = Path(ensure_private_dir(tmp_path / "state"))
        (directory / "default.json").write_text("{}")
        (directory / "default.json").chmod(0o644)

        with pytest.raises(UnsafeLocation, match="accessible to other users"):
            read_private_text(directory / "default.json")

    def test_a_lock_file_moved_while_waited_for_is_refused(self, tmp_path: Path) -> None:
        """The owner of a writable parent renames ``locks/`` while a refresh holds its lock:
        the waiter must not go on with a lock nobody else will ever take."""
        locks = tmp_path / "locks"
        waited = threading.Event()
        errors: list[BaseException] = []

        def second() -> None:
            try:
                with account_lock(locks, "default", timeout=30):
                    pass
            except UnsafeLocation as exc:
                errors.append(exc)
            finally:
                waited.set()

        with flocked(locks / "default.lock") as fd:
            assert fd is not None
            thread = threading.Thread(target=second)
            thread.start()
            # the waiter has opened the file once it exists under its name; move it away
            while not waited.is_set() and not _opened_by_another(locks / "default.lock"):
                waited.wait(0.01)
            os.rename(locks, tmp_path / "moved")
        thread.join(30)

        assert len(errors) == 1
        assert "moved or replaced" in str(errors[0])


def _opened_by_another(path: Path) -> bool:
    """Whether a second descriptor of ``path`` is open in this process (the waiting thread's)."""
    target = os.stat(path)
    count = 0
    for entry in os.scandir("/proc/self/fd"):
        try:
            info = os.stat(entry.path)
        except OSError:
            continue
        if (info.st_dev, info.st_ino) == (target.st_dev, target.st_ino):
            count += 1
    return count >= 2


class TestTheBusOfACronCaller:
    def test_without_runtime_dir_the_logind_place_is_used(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        runtime = tmp_path / "run-user"
        runtime.mkdir(mode=0o700)
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(str(runtime / "bus"))
        listener.close()
        monkeypatch.setattr(
            "tvmaniac_refreshd.storage.session_bus.logind_runtime_dir", lambda: str(runtime)
        )
        environ = {"HOME": str(tmp_path)}
        adopt_session_bus(environ)

        assert environ["DBUS_SESSION_BUS_ADDRESS"] == f"unix:path={runtime}/bus"


def test_failures_are_counted_under_the_lock(tmp_path: Path) -> None:
    """Every writer's failure counts: the increment is read and written under the lock."""
    states = StateFiles(tmp_path / "state")

    def fail(times: int) -> None:
        for _ in range(times):
            states.modify(
                "default",
                lambda record: replace(
                    record, consecutive_failures=record.consecutive_failures + 1
                ),
            )

    threads = [threading.Thread(target=fail, args=(25,)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert states.load("default").consecutive_failures == 100
