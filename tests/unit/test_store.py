"""The keyring boundary: bounded calls, one translation of every failure, no silent downgrade."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import keyring.errors
import pytest

from tests.fakes import MemoryBackend
from tvmaniac_refreshd.config.settings import StoreSettings
from tvmaniac_refreshd.core.errors import StoreCorrupt, StoreUnavailable, TransientError
from tvmaniac_refreshd.core.tokens import TokenDocument, TokenSet
from tvmaniac_refreshd.storage.keyring_store import KeyringStore, is_insecure
from tvmaniac_refreshd.storage.locks import account_lock
from tvmaniac_refreshd.storage.secret_service import Locked
from tvmaniac_refreshd.storage.secret_service_owner import (
    ANOTHER,
    GNOME_KEYRING,
    KEEPASSXC,
    KWALLET,
    SecretServiceOwner,
)
from tvmaniac_refreshd.storage.secret_service_owner import _executable as executable_of
from tvmaniac_refreshd.storage.secret_service_owner import _program as owner_program
from tvmaniac_refreshd.storage.session_bus import adopt_session_bus

DOC = TokenDocument(
    account="default",
    provider="trakt",
    tokens=TokenSet("a" * 64, "r" * 64, 1, 604800, 604801),
    fingerprint="sha256:x",
    obtained_at=1,
)


def store_with(backend: object, **settings: object) -> KeyringStore:
    return KeyringStore(StoreSettings(**settings), lambda: backend)  # type: ignore[arg-type,return-value]


class TestKeyringStore:
    def test_round_trip_and_delete(self) -> None:
        """Save, load and delete one account's document."""
        backend = MemoryBackend()
        store = store_with(backend)

        store.save(DOC)
        assert store.load("default") == DOC
        assert store.delete("default") is True
        assert store.load("default") is None
        assert store.delete("default") is False

    def test_client_secret_is_a_separate_item(self) -> None:
        """The client secret never shares an item with the tokens."""
        backend = MemoryBackend()
        store = store_with(backend)
        store.save(DOC)
        store.save_client_secret("default", "s3cret-client")

        assert store.load_client_secret("default") == "s3cret-client"
        assert store.load("default") == DOC
        assert store.delete_client_secret("default")

    def test_corrupt_item_reported_and_kept(self) -> None:
        """A foreign item is reported and stays as it was."""
        backend = MemoryBackend(items={("tvmaniac-refreshd", "default"): "hello"})

        with pytest.raises(StoreCorrupt):
            store_with(backend).load("default")
        assert backend.items[("tvmaniac-refreshd", "default")] == "hello"

    @pytest.mark.parametrize(
        ("exc", "fix"),
        [
            (keyring.errors.KeyringLocked("Failed to unlock the collection!"), "locked"),
            (keyring.errors.NoKeyringError("No recommended backend"), "no Secret Service"),
            (
                keyring.errors.InitError("Failed to create the collection: Prompt dismissed.."),
                "no default collection",
            ),
            (
                RuntimeError(
                    "Unable to initialize SecretService: Environment variable "
                    "DBUS_SESSION_BUS_ADDRESS is unset"
                ),
                "DBUS_SESSION_BUS_ADDRESS",
            ),
            (FileNotFoundError("/run/user/1/bus"), "no Secret Service"),
            (keyring.errors.PasswordSetError("nope"), "keyring failed"),
        ],
    )
    def test_failures_translated(self, exc: BaseException, fix: str) -> None:
        """Each keyring failure becomes StoreUnavailable (exit 69) with a fix."""
        store = store_with(MemoryBackend(fail_with=exc))

        with pytest.raises(StoreUnavailable, match=fix) as caught:
            store.load("default")
        assert caught.value.exit_code == 69

    def test_no_login_keyring_says_how_to_create_one(self) -> None:
        """Issue 26 #12: "create a 'login' keyring" comes with the ways to do it."""
        failing = keyring.errors.InitError("Failed to create the collection: Prompt dismissed..")
        store = store_with(MemoryBackend(fail_with=failing))

        with pytest.raises(StoreUnavailable) as caught:
            store.load("default")
        assert "Passwords and Keys (seahorse), + > Password keyring" in str(caught.value)
        assert "gnome-keyring-daemon --unlock --components=secrets" in str(caught.value)

    @pytest.mark.parametrize(
        ("headless", "advice", "not_advice"),
        [
            (False, "seahorse", "gnome-keyring-daemon --unlock"),
            (True, "gnome-keyring-daemon --unlock --components=secrets", "seahorse"),
        ],
    )
    def test_a_locked_keyring_gets_advice_for_the_machine(
        self, headless: bool, advice: str, not_advice: str
    ) -> None:
        """Without a desktop to unlock it in, the advice is the shell recipe that works."""
        locked = MemoryBackend(fail_with=keyring.errors.KeyringLocked("Failed to unlock"))
        store = KeyringStore(StoreSettings(), lambda: locked, headless=headless)

        with pytest.raises(StoreUnavailable, match="locked") as caught:
            store.load("default")
        assert advice in str(caught.value)
        assert not_advice not in str(caught.value)
        if headless:
            assert "gnome-keyring-daemon.socket" in str(caught.value)

    @pytest.mark.parametrize(
        ("program", "advice", "not_advice"),
        [
            (GNOME_KEYRING, "gnome-keyring-daemon --unlock", "KeePassXC"),
            (KEEPASSXC, "keepassxc --pw-stdin", "gnome-keyring-daemon"),
            (KWALLET, "pam_kwallet", "gnome-keyring-daemon"),
            (ANOTHER, "secretd's own tool", "gnome-keyring-daemon"),
        ],
    )
    def test_locked_advice_is_the_owners_own(
        self, program: str, advice: str, not_advice: str
    ) -> None:
        """Each Secret Service is told its own way to unlock (issue 23, finding 4)."""
        owner = SecretServiceOwner(program, "secretd", 42)
        locked = MemoryBackend(fail_with=Locked())
        store = KeyringStore(StoreSettings(), lambda: locked, headless=True, owner=lambda: owner)

        with pytest.raises(StoreUnavailable, match="locked") as caught:
            store.load("default")
        assert advice in str(caught.value)
        assert not_advice not in str(caught.value)

    def test_an_empty_secret_is_a_locked_store_not_a_corrupt_item(self) -> None:
        """KWallet answers a closed wallet's GetSecret with an empty secret: 69 and how to
        unlock, never "remove it and log in again" (issue 23, finding 3)."""
        backend = MemoryBackend(items={("tvmaniac-refreshd", "default"): ""})
        owner = SecretServiceOwner(KWALLET, "kwalletd5", 42, "5.103.0")
        store = KeyringStore(StoreSettings(), lambda: backend, owner=lambda: owner)

        with pytest.raises(StoreUnavailable, match="empty secret") as caught:
            store.load("default")
        assert "KWallet" in str(caught.value)
        assert "logout" not in str(caught.value)
        assert backend.items[("tvmaniac-refreshd", "default")] == ""

    def test_hanging_call_times_out(self) -> None:
        """A keyring call that never returns is abandoned after the timeout."""
        release = threading.Event()
        store = store_with(MemoryBackend(hang=release), timeout=0.2)
        try:
            with pytest.raises(StoreUnavailable, match="did not answer within"):
                store.load("default")
            # Until the stuck call returns, no other is started (issue 13, finding 3).
            with pytest.raises(StoreUnavailable, match="not yet answered an earlier call"):
                store.load("default")
        finally:
            release.set()
        wait_until_no_keyring_worker()

    def test_backend_retried_after_failure(self) -> None:
        """After a failure the backend is set up again, so an unlock takes effect."""
        backends = [MemoryBackend(fail_with=keyring.errors.KeyringLocked("x")), MemoryBackend()]
        store = KeyringStore(StoreSettings(), lambda: backends.pop(0))

        with pytest.raises(StoreUnavailable):
            store.load("default")
        assert store.load("default") is None

    def test_insecure_backend_refused(self) -> None:
        """The fail and plaintext backends are refused unless the user opts in."""
        from keyring.backends import fail  # noqa: PLC0415

        backend = fail.Keyring()  # type: ignore[no-untyped-call]

        assert is_insecure(backend)
        with pytest.raises(StoreUnavailable, match="allow_insecure_backend"):
            store_with(backend).load("default")

    def test_secure_backend_accepted(self) -> None:
        """The Secret Service and macOS backends are secure stores."""
        from keyring.backends import SecretService, macOS  # noqa: PLC0415

        assert not is_insecure(SecretService.Keyring())  # type: ignore[no-untyped-call]
        assert not is_insecure(macOS.Keyring())  # type: ignore[no-untyped-call]


def wait_until_no_keyring_worker() -> None:
    """Wait (bounded) for workers given up on to finish, so later tests start clean."""
    for _ in range(500):
        if not any(thread.name.startswith("keyring:") for thread in threading.enumerate()):
            return
        threading.Event().wait(0.01)
    raise AssertionError("a keyring worker never finished")


class TestAdoptSessionBus:
    def test_sets_bus_from_runtime_dir(self, tmp_path: Path) -> None:
        """Under cron or ssh, $XDG_RUNTIME_DIR/bus is adopted as the session bus (R8)."""
        tmp_path.chmod(0o700)
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(str(tmp_path / "bus"))
        listener.close()
        environ = {"XDG_RUNTIME_DIR": str(tmp_path)}
        adopt_session_bus(environ)

        assert environ["DBUS_SESSION_BUS_ADDRESS"] == f"unix:path={tmp_path}/bus"

    def test_keeps_existing_bus(self, tmp_path: Path) -> None:
        """An explicit bus address is never replaced."""
        (tmp_path / "bus").touch()
        environ = {"XDG_RUNTIME_DIR": str(tmp_path), "DBUS_SESSION_BUS_ADDRESS": "unix:path=/x"}
        adopt_session_bus(environ)

        assert environ["DBUS_SESSION_BUS_ADDRESS"] == "unix:path=/x"


HOLDER = """
import sys, time
from pathlib import Path
from tvmaniac_refreshd.storage.locks import account_lock
with account_lock(Path(sys.argv[1]), "default", timeout=5):
    print("held", flush=True)
    sys.stdin.readline()
"""


@contextlib.contextmanager
def lock_holder(directory: Path) -> Iterator[subprocess.Popen[str]]:
    """Run another process that holds the lock until it is killed."""
    with subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(directory)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "held\n"
        try:
            yield holder
        finally:
            holder.kill()
            holder.wait()


class TestAccountLock:
    def test_second_holder_waits_then_gives_up(self, tmp_path: Path) -> None:
        """While another process holds the lock, a second gets a TransientError."""
        with (
            lock_holder(tmp_path),
            pytest.raises(TransientError, match="another tvmaniac-refreshd process"),
            account_lock(tmp_path, "default", timeout=0.1),
        ):
            pass

    def test_lock_dies_with_its_holder(self, tmp_path: Path) -> None:
        """A holder killed with SIGKILL leaves no lock behind."""
        with lock_holder(tmp_path) as holder:
            holder.kill()
            holder.wait()

        with account_lock(tmp_path, "default", timeout=0.1):
            acquired = True
        assert acquired
        assert oct((tmp_path / "default.lock").stat().st_mode & 0o777) == "0o600"


class TestNamingTheSecretService:
    """A sandboxed daemon cannot read /proc/PID/exe of the keyring: seen in the unit's container,
    where gnome-keyring was then named "another Secret Service, gnome-keyring-d"."""

    @pytest.mark.parametrize(
        ("executable", "program"),
        [
            ("gnome-keyring-daemon", GNOME_KEYRING),
            ("gnome-keyring-d", GNOME_KEYRING),  # its comm: 15 bytes
            ("keepassxc", KEEPASSXC),
            ("kwalletd5", KWALLET),
            ("gnome-keyring", ANOTHER),  # a prefix that is not a cut comm
            ("secretd", ANOTHER),
        ],
    )
    def test_known_programs_by_executable_or_comm(self, executable: str, program: str) -> None:
        assert owner_program(executable) == program

    def test_argv0_names_a_process_whose_exe_cannot_be_read(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        child = subprocess.Popen(["sleep", "60"])
        try:
            # Until it has exec'd, the child is a copy of this interpreter.
            for _ in range(1000):
                if os.readlink(f"/proc/{child.pid}/exe").endswith("/sleep"):
                    break
                time.sleep(0.01)

            def refused(path: str) -> str:
                raise PermissionError(13, "Permission denied", path)

            monkeypatch.setattr("os.readlink", refused)
            assert executable_of(child.pid) == "sleep"
        finally:
            child.kill()
            child.wait()


class TestDirectSecretService:
    def test_an_unreachable_bus_is_handed_to_keyring(self, tmp_path: Path) -> None:
        """No bus at the address: keyring's backend decides and words it, as before the link."""
        from tvmaniac_refreshd.storage import secret_service  # noqa: PLC0415
        from tvmaniac_refreshd.storage.session_bus import Unsure  # noqa: PLC0415

        environ = {"DBUS_SESSION_BUS_ADDRESS": f"unix:path={tmp_path}/no-bus"}
        with pytest.raises(Unsure) as caught:
            secret_service.read_item("tvmaniac-refreshd", "default", environ=environ, timeout=5)

        assert type(caught.value) is Unsure
