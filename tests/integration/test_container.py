"""The container harness gives a real systemd user manager, journald and keyring.

These are the platform features the daemon's user service relies on (Type=notify with a
watchdog, native journal fields, the Secret Service on the user's session bus), checked in
one booted container shared by the module.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.container import Container, available, poll

pytestmark = pytest.mark.container

USER = "tok"
KEYRING_PASSWORD = "container-test-password"

# A minimal Type=notify service: ready, a status line, then watchdog pings. It exits on
# its own so that a failed test cannot leave it running for long.
NOTIFY_SCRIPT = """\
import time
from tvmaniac_refreshd.daemon.notify import Notifier
notifier = Notifier()
notifier.ready()
notifier.status("hello")
deadline = time.monotonic() + 120
while time.monotonic() < deadline:
    notifier.watchdog()
    time.sleep(1)
"""

JOURNAL_SCRIPT = """\
import socket
with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
    sock.sendto(b"MESSAGE=x\\nACCOUNT=probe\\nPRIORITY=4\\n", "/run/systemd/journal/socket")
"""

KEYRING_SCRIPT = """\
from keyring.backends.SecretService import Keyring
backend = Keyring()
backend.set_password("refreshd-probe", "tok", "s3cret")
print(backend.get_password("refreshd-probe", "tok"))
"""


@pytest.fixture(scope="module")
def container() -> Iterator[Container]:
    """One booted container with a lingering user ``tok``, shared by the module."""
    reason = available()
    if reason is not None:
        # `make test` installs systemd-container, so a missing prerequisite is a failure.
        pytest.fail(f"cannot boot a systemd container here: {reason}")
    with Container() as running:
        running.create_user(USER)
        yield running


def test_user_manager_runs(container: Container) -> None:
    """The lingering user's systemd manager is up and reachable as that user."""
    state = container.user_systemctl(USER, "is-system-running").stdout.strip()

    assert state in ("running", "degraded")


def test_transient_notify_service_reports_status(container: Container) -> None:
    """A Type=notify user unit with a watchdog becomes active and publishes its STATUS=."""
    started = container.run(
        [
            "systemd-run",
            "--user",
            "--unit=probe",
            "-p",
            "Type=notify",
            "-p",
            "WatchdogSec=5",
            container.python,
            "-c",
            NOTIFY_SCRIPT,
        ],
        user=USER,
    )
    assert started.returncode == 0, started.stderr
    try:
        poll(
            lambda: (
                container.user_systemctl(USER, "show", "-P", "StatusText", "probe").stdout
                == "hello\n"
            ),
            timeout=20,
            what="StatusText=hello",
        )
        shown = container.user_systemctl(USER, "show", "-p", "ActiveState,WatchdogUSec", "probe")
        props = dict(line.split("=", 1) for line in shown.stdout.split())

        assert props == {"ActiveState": "active", "WatchdogUSec": "5s"}
    finally:
        container.user_systemctl(USER, "stop", "probe")


def test_native_journal_fields_from_user_unit(container: Container) -> None:
    """A datagram to journald's native socket from a user unit is queryable by custom field."""
    ran = container.run(
        [
            "systemd-run",
            "--user",
            "--wait",
            "--quiet",
            "--unit=journal-probe",
            container.python,
            "-c",
            JOURNAL_SCRIPT,
        ],
        user=USER,
    )
    assert ran.returncode == 0, ran.stderr

    entries = poll(
        lambda: container.journal(USER, "ACCOUNT=probe"), timeout=20, what="ACCOUNT=probe entry"
    )

    assert [(e["MESSAGE"], e["PRIORITY"], e["_TRANSPORT"]) for e in entries] == [
        ("x", "4", "journal")
    ]
    assert entries[0]["_UID"] == str(container.uid(USER))


def test_keyring_from_user_unit(container: Container) -> None:
    """After init_keyring, a user unit stores and reads a secret through the Secret Service."""
    status = container.init_keyring(USER, KEYRING_PASSWORD)
    assert status.endswith("locked=False"), status

    ran = container.run(
        [
            "systemd-run",
            "--user",
            "--wait",
            "--pipe",
            "--quiet",
            "--unit=keyring-probe",
            container.python,
            "-c",
            KEYRING_SCRIPT,
        ],
        user=USER,
    )

    assert (ran.returncode, ran.stdout.strip()) == (0, "s3cret"), ran.stderr


def test_reboot_keeps_the_disk_and_restarts_lingering_users(container: Container) -> None:
    """A reboot boots again from the same overlay: files on disk stay, /run starts empty, PID 1
    is new, and the lingering user's manager comes back with nobody logged in."""
    container.run(["sh", "-c", "echo kept > /root/reboot-probe && touch /run/gone"], check=True)
    before = container.leader

    container.reboot()
    container.wait_for_user_manager(USER)

    assert container.leader != before
    assert container.run(["cat", "/root/reboot-probe"]).stdout.strip() == "kept"
    assert container.run(["test", "-e", "/run/gone"]).returncode == 1
    assert container.run(["loginctl", "list-sessions", "--no-legend"]).stdout.strip() == ""
