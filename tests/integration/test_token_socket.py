"""`token` answered by a running daemon over its socket (storage/token_socket.py), against the
real daemon, the real gnome-keyring and the real KeePassXC: answered without D-Bus while the
daemon runs, the keyring read as before when it does not, off under KeePassXC, and a client of
another uid (a real one: ``setpriv`` to nobody) refused by the daemon's own check."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_daemon import DAEMON_CONFIG, Daemon
from tests.support.harness import Harness, wait_until
from tests.support.keyring_session import KeyringSession
from tests.support.secret_services import KeePassXCSession
from trakt_emulator import Emulator

pytestmark = pytest.mark.keyring

# Runs the console script's code as `tvmaniac-refreshd` does and says whether D-Bus was used:
# jeepney is what every keyring read of ours (and keyring's own) goes through. Answered by the
# daemon, the quick path must not even load cryptography or threading.
PROBE = (
    "import sys\n"
    "from tvmaniac_refreshd.entry import main\n"
    "code = main()\n"
    "heavy = {'jeepney', 'cryptography', 'threading'} & set(sys.modules)\n"
    "sys.stderr.write('jeepney' if 'jeepney' in heavy else ' '.join(heavy) or 'no-d-bus')\n"
    "sys.exit(code)\n"
)
# A client of another uid: connects, asks, prints what it was told (or the OSError's name).
# The daemon may refuse before the request is sent: a broken pipe then, and the refusal to read.
OTHER_CLIENT = (
    "import json, socket, sys\n"
    "s = socket.socket(socket.AF_UNIX)\n"
    "s.settimeout(20)\n"
    "try:\n"
    "    s.connect(sys.argv[1])\n"
    "    try:\n"
    "        s.sendall(json.dumps({'v': 1, 'account': 'default', 'bus': sys.argv[2]}).encode()"
    " + b'\\n')\n"
    "    except (BrokenPipeError, ConnectionResetError):\n"
    "        pass\n"
    "    print(s.recv(65536).decode().strip())\n"
    "except OSError as exc:\n"
    "    print(type(exc).__name__)\n"
)


AS_NOBODY = ("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups")


def token_socket(harness: Harness) -> Path:
    return harness.state_dir / "_token.sock"


def probe(harness: Harness) -> tuple[int, str, str]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, "token"],
        env=harness.env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return result.returncode, result.stdout, result.stderr.strip().rsplit("\n", 1)[-1]


def start_daemon(harness: Harness, tmp_path: Path) -> Daemon:
    harness.extra_config = DAEMON_CONFIG
    harness.write_config()
    daemon = Daemon(harness, tmp_path)
    try:
        daemon.receive_until("READY=1")
    except BaseException:
        daemon.stop()  # never left running behind a failed test
        raise
    return daemon


def test_a_running_daemon_answers_token_without_d_bus(harness: Harness, tmp_path: Path) -> None:
    grant = harness.seed(age=3600)
    daemon = start_daemon(harness, tmp_path)
    try:
        assert harness.run("token").out == f"{grant['access_token']}\n"  # the full way, once
        wait_until(token_socket(harness).exists, timeout=30, what="the token socket")
        code, out, used = probe(harness)
    finally:
        run = daemon.stop()

    assert (code, out, used) == (0, f"{grant['access_token']}\n", "no-d-bus")
    assert run.code == 0, run.err
    assert "token_socket.listening" in run.err
    assert not token_socket(harness).exists()  # removed at stop
    assert harness.emulator.counters()["refresh_success"] == 0


def test_the_socket_is_private(harness: Harness, tmp_path: Path) -> None:
    harness.seed(age=3600)
    daemon = start_daemon(harness, tmp_path)
    try:
        wait_until(token_socket(harness).exists, timeout=30, what="the token socket")
        info = token_socket(harness).lstat()
        directory = harness.state_dir.stat()
    finally:
        daemon.stop()

    assert info.st_mode & 0o777 == 0o600
    assert info.st_uid == os.geteuid()
    assert directory.st_mode & 0o077 == 0


def test_without_a_daemon_token_reads_the_keyring(harness: Harness, tmp_path: Path) -> None:
    grant = harness.seed(age=3600)
    daemon = start_daemon(harness, tmp_path)
    try:
        wait_until(token_socket(harness).exists, timeout=30, what="the token socket")
    finally:
        daemon.process.kill()  # no clean stop: its socket stays, and nobody answers it
        daemon.stop()
    assert token_socket(harness).exists()
    assert harness.run("token").code == 0

    code, out, used = probe(harness)

    assert (code, out, used) == (0, f"{grant['access_token']}\n", "jeepney")


def test_a_silent_listener_delays_token_only_briefly(harness: Harness) -> None:
    """A process that accepts but never answers (a hung or too old daemon): `token` reads the
    keyring after the client's short timeout, and prints the right token."""
    grant = harness.seed(age=3600)
    assert harness.run("token").code == 0
    silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    silent.bind(str(token_socket(harness)))
    os.chmod(token_socket(harness), 0o600)
    silent.listen(1)
    try:
        code, out, used = probe(harness)
    finally:
        silent.close()

    assert (code, out, used) == (0, f"{grant['access_token']}\n", "jeepney")


@pytest.fixture
def reachable_home(emulator: Emulator, clean_keyring: KeyringSession) -> Iterator[Harness]:
    """A harness whose home is directly under /tmp, so that another uid can be let in."""
    root = Path(tempfile.mkdtemp(prefix="i28-token-"))
    try:
        rig = Harness(emulator=emulator, keyring=clean_keyring, root=root)
        yield rig
        assert rig.leaks() == []
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root")
def test_a_client_of_another_uid_is_refused(reachable_home: Harness, tmp_path: Path) -> None:
    """The directory and the socket's mode keep other users out; should both be opened up (as
    here, on purpose), the daemon's SO_PEERCRED check still refuses a client of another uid."""
    harness = reachable_home
    grant = harness.seed(age=3600)
    daemon = start_daemon(harness, tmp_path)
    try:
        path = token_socket(harness)
        wait_until(path.exists, timeout=30, what="the token socket")
        for directory in (
            harness.root,
            harness.root / ".local",
            harness.root / ".local" / "state",
            harness.state_dir,
        ):
            directory.chmod(directory.stat().st_mode | 0o001)  # search only, for the test
        path.chmod(0o666)
        bus = harness.env()["DBUS_SESSION_BUS_ADDRESS"]
        other = subprocess.run(
            [*AS_NOBODY, sys.executable, "-I", "-c", OTHER_CLIENT, str(path), bus],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        own = subprocess.run(
            [sys.executable, "-I", "-c", OTHER_CLIENT, str(path), bus],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        daemon.stop()

    assert other.returncode == 0, other.stderr
    assert json.loads(other.stdout) == {"v": 1, "refused": "other uid"}
    assert str(grant["access_token"]) not in other.stdout
    # The same request from our own uid is answered: the refusal was the uid's.
    assert json.loads(own.stdout)["document"]["access_token"] == grant["access_token"]
    assert "refresh_token" not in json.loads(own.stdout)["document"]


def test_off_under_keepassxc(emulator: Emulator, tmp_path: Path) -> None:
    """KeePassXC may ask per client: the daemon does not answer for it, and says why."""
    with KeePassXCSession() as keepassxc:
        home = tmp_path / "home"
        home.mkdir()
        harness = Harness(emulator=emulator, keyring=keepassxc, root=home)
        grant = harness.seed(age=3600)
        assert harness.run("token").code == 0
        daemon = start_daemon(harness, tmp_path)
        try:
            code, out, used = probe(harness)
            present = token_socket(harness).exists()
        finally:
            run = daemon.stop()

    assert not present
    assert "token_socket.off" in run.err
    assert "KeePassXC may ask per client" in run.err
    assert (code, out, used) == (0, f"{grant['access_token']}\n", "jeepney")
    assert harness.leaks() == []
