"""The .deb in a real Debian 12 systemd: installed with dpkg, a lingering user sets up and logs
in with the packaged command and enables the packaged unit with systemctl alone; it refreshes
against the emulator with its journal fields; `apt-get remove` leaves no broken unit.

The package is built once per sdist content (tests/support/packages.py, `make deb`'s steps,
lintian included); the container is an overlay of the host, so the install touches nothing
here.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator

import pytest

from tests.support.container import Container, available, poll
from tests.support.harness import CLIENT_ID, CLIENT_SECRET
from tests.support.packages import deb
from trakt_emulator import Emulator

pytestmark = pytest.mark.container

USER = "tok"
LIFETIME = 20  # seconds: the daemon refreshes every ~10 s
UNIT = "tvmaniac-refreshd.service"
PACKAGED = f"/usr/lib/systemd/user/{UNIT}"
PROG = "tvmaniac-refreshd"
OWN_UNIT = f".config/systemd/user/{UNIT}"


class Machine:
    def __init__(self, container: Container, emulator: Emulator) -> None:
        self.container = container
        self.emulator = emulator
        self.uid = container.uid(USER)

    def cli(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """The packaged command, found on PATH as a user types it."""
        return self.container.run([PROG, *args], user=USER, input=input, check=check)

    def systemctl(self, *args: str) -> str:
        return self.container.user_systemctl(USER, *args).stdout.strip()

    def journal(self, *match: str) -> list[dict[str, object]]:
        return self.container.journal(
            None, f"_UID={self.uid}", "SYSLOG_IDENTIFIER=tvmaniac-refreshd", *match
        )


@pytest.fixture(scope="module")
def machine() -> Iterator[Machine]:
    reason = available()
    if reason is not None:
        pytest.fail(f"cannot boot a systemd container here: {reason}")
    package = deb()
    with (
        Emulator(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, access_ttl=LIFETIME) as emu,
        Container(binds=[package.parent]) as container,
    ):
        container.run(["dpkg", "-i", str(package)], check=True, timeout=600)
        container.create_user(USER)
        container.init_keyring(USER, "deb-test-password")
        yield Machine(container, emu)


def test_the_command_man_page_completions_and_example_are_where_debian_looks(
    machine: Machine,
) -> None:
    run = machine.container.run

    assert run(["sh", "-c", f"command -v {PROG}"], user=USER).stdout.strip() == f"/usr/bin/{PROG}"
    man = run(["man", "-w", PROG], user=USER)
    assert man.stdout.strip() == f"/usr/share/man/man1/{PROG}.1.gz"
    # bash-completion's own loader finds it on the first TAB, by the command's name.
    loaded = run(
        [
            "bash",
            "-c",
            "source /usr/share/bash-completion/bash_completion && "
            f"__load_completion {PROG} && complete -p {PROG}",
        ],
        user=USER,
    )
    assert loaded.stdout.strip() == f"complete -F _tvmaniac_refreshd {PROG}", loaded.stderr
    for path in (
        f"/usr/share/zsh/vendor-completions/_{PROG}",
        f"/usr/share/fish/vendor_completions.d/{PROG}.fish",
        f"/usr/share/doc/{PROG}/examples/refreshd.example.toml",
        PACKAGED,
        f"/usr/lib/systemd/user/{PROG}-refresh.timer",
    ):
        assert run(["test", "-f", path]).returncode == 0, path


def test_setup_login_and_systemctl_enable_give_a_refresh_in_the_journal(
    machine: Machine,
) -> None:
    """What the README says a .deb user does, word for word, with the emulator's URLs."""
    written = machine.cli("config", "init", "--client-id", CLIENT_ID).stdout
    match = re.search(r"Wrote (\S+)", written)
    assert match is not None, written
    machine.container.run(
        ["sh", "-c", f"cat >> {match.group(1)}"],
        user=USER,
        input=f'auth_url = "{machine.emulator.url}"\napi_url = "{machine.emulator.url}"\n',
        check=True,
    )
    machine.cli("config", "set-secret", input=f"{CLIENT_SECRET}\n")
    machine.emulator.configure(auto_approve_after_polls=0, device_interval=1)
    machine.cli("login")

    enable = machine.container.user_systemctl(USER, "enable", "--now", PROG)

    assert enable.returncode == 0, enable.stderr
    assert machine.systemctl("show", "-P", "FragmentPath", UNIT) == PACKAGED
    entries = poll(
        lambda: machine.journal(
            f"_SYSTEMD_USER_UNIT={UNIT}", "ACCOUNT=default", "REFRESH_RESULT=refreshed"
        ),
        timeout=120,
        what="a refresh in the journal",
    )
    assert entries[0]["EVENT"] == "refresh.finished"
    assert machine.systemctl("show", "-P", "ActiveState", UNIT) == "active"
    secrets = {CLIENT_SECRET}
    for grant in machine.emulator.state()["grants"]:  # type: ignore[attr-defined]
        secrets |= {grant["access_token"], grant["refresh_token"]}
    assert [secret for secret in secrets if secret in json.dumps(machine.journal())] == []


def test_service_status_and_install_work_with_the_packaged_unit(machine: Machine) -> None:
    status = machine.cli("service", "status").stdout
    assert PACKAGED in status, status
    # With a --config of its own, the user's unit overrides the package's, and says so...
    config = "/home/tok/.config/tvmaniac-refreshd/config.toml"
    own = machine.cli("--config", config, "service", "install")
    assert "overrides the packaged tvmaniac-refreshd.service" in own.stdout, own.stdout
    assert machine.systemctl("show", "-P", "FragmentPath", UNIT) == f"/home/tok/{OWN_UNIT}"

    # ...and a plain install goes back to the packaged unit, the copy and its link gone.
    install = machine.cli("service", "install")

    assert "Enabled and started the packaged daemon service" in install.stdout, install.stdout
    listing = machine.container.run(
        ["ls", "-A", "/home/tok/.config/systemd/user"], user=USER
    ).stdout.split()
    assert UNIT not in listing  # no copy that would shadow the package's unit
    assert machine.systemctl("is-enabled", UNIT) == "enabled"
    assert machine.systemctl("show", "-P", "FragmentPath", UNIT) == PACKAGED
    assert machine.systemctl("show", "-P", "ActiveState", UNIT) == "active"


def test_apt_remove_leaves_no_broken_unit(machine: Machine) -> None:
    removed = machine.container.run(
        ["apt-get", "remove", "-y", "-q", PROG],
        env={"DEBIAN_FRONTEND": "noninteractive"},
        timeout=600,
    )

    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert machine.container.run(["test", "-e", PACKAGED]).returncode != 0
    # Stopped, disabled and forgotten: nothing runs from deleted files, nothing failed, no
    # enablement link points at nothing.
    assert machine.systemctl("show", "-P", "LoadState", UNIT) == "not-found"
    assert machine.systemctl("show", "-P", "ActiveState", UNIT) == "inactive"
    assert machine.systemctl("list-units", "--failed", "--plain", "--no-legend") == ""
    dangling = machine.container.run(
        ["find", "/home/tok/.config/systemd/user", "-xtype", "l"], user=USER
    )
    assert dangling.stdout.strip() == ""
    assert machine.container.run(["pgrep", "-u", USER, "-f", "tvmaniac_refreshd"]).stdout == ""
