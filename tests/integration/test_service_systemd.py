"""`service install` in a real systemd: the user units run, talk sd_notify, log to journald
with their fields, reach the keyring and the emulator, switch modes and uninstall cleanly.

One booted container (systemd-nspawn) with a lingering user; the Trakt emulator runs in the
test process, reachable from the container over the shared loopback.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.container import Container, available, poll
from tests.support.harness import CLIENT_ID, CLIENT_SECRET, REPO
from trakt_emulator import Emulator
from tvmaniac_refreshd.service.systemd import private_tmp_binds

pytestmark = pytest.mark.container

USER = "tok"
LIFETIME = 20  # seconds: the installed daemon refreshes every ~10 s
UNIT_DIR = "/home/tok/.config/systemd/user"

DROP_IN = "/home/tok/.config/systemd/user/{unit}.d/test.conf"


class Machine:
    """The container, the emulator, and the user's view of tvmaniac-refreshd."""

    def __init__(self, container: Container, emulator: Emulator) -> None:
        self.container = container
        self.emulator = emulator
        self.uid = container.uid(USER)

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.container.run(
            [self.container.python, "-m", "tvmaniac_refreshd", *args], user=USER, check=check
        )

    def systemctl(self, *args: str) -> str:
        return self.container.user_systemctl(USER, *args).stdout.strip()

    def show(self, unit: str, prop: str) -> str:
        return self.systemctl("show", "-P", prop, unit)

    def journal(self, *match: str) -> list[dict[str, object]]:
        return self.container.journal(
            None, f"_UID={self.uid}", "SYSLOG_IDENTIFIER=tvmaniac-refreshd", *match
        )

    def drop_in(self, unit: str, text: str) -> str:
        """Write a test drop-in for ``unit``; return its directory, for ``remove_drop_in``."""
        path = DROP_IN.format(unit=unit)
        self.container.run(
            ["sh", "-c", f"mkdir -p $(dirname {path}) && cat > {path}"],
            user=USER,
            input=text,
            check=True,
        )
        return path.rsplit("/", 1)[0]

    def remove_drop_in(self, directory: str) -> None:
        self.container.run(["rm", "-rf", directory], user=USER)
        self.systemctl("daemon-reload")

    def unit_files(self) -> list[str]:
        listing = self.container.run(["ls", "-A", UNIT_DIR], user=USER)
        return sorted(listing.stdout.split())


@pytest.fixture(scope="module")
def machine() -> Iterator[Machine]:
    reason = available()
    if reason is not None:
        pytest.fail(f"cannot boot a systemd container here: {reason}")
    with (
        Emulator(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, access_ttl=LIFETIME) as emu,
        Container() as container,
    ):
        container.create_user(USER)
        container.init_keyring(USER, "service-test-password")
        config = (
            "[accounts.default]\n"
            f'provider = "trakt"\nclient_id = "{CLIENT_ID}"\nclient_secret = "{CLIENT_SECRET}"\n'
            f'auth_url = "{emu.url}"\napi_url = "{emu.url}"\n'
            "[alerts]\ndesktop = false\n"
        )
        container.run(
            [
                "sh",
                "-c",
                "mkdir -p ~/.config/tvmaniac-refreshd && umask 077 && "
                "cat > ~/.config/tvmaniac-refreshd/config.toml",
            ],
            user=USER,
            input=config,
            check=True,
        )
        # A real device login inside the container; the emulator approves the code itself.
        emu.configure(auto_approve_after_polls=0, device_interval=1)
        container.run([container.python, "-m", "tvmaniac_refreshd", "login"], user=USER, check=True)
        yield Machine(container, emu)


class TestDaemonService:
    def test_install_runs_the_daemon(self, machine: Machine) -> None:
        """After install the unit is active, READY was reached, and STATUS names the account."""
        result = machine.cli("service", "install")

        assert "Installed and started the daemon service" in result.stdout
        assert machine.show("tvmaniac-refreshd.service", "ActiveState") == "active"
        status = poll(
            lambda: machine.show("tvmaniac-refreshd.service", "StatusText"),
            timeout=30,
            what="a STATUS line",
        )
        assert status.startswith("default: ")
        # Absolute, with the zone: "in 28s" would be stale as soon as systemctl shows it.
        assert re.search(r" at \d\d:\d\d [A-Z]", status), status
        assert machine.show("tvmaniac-refreshd.service", "WatchdogUSec") == "2h"
        # One planned line per account at start, so ACCOUNT=default matches from the first.
        planned = poll(
            lambda: machine.journal("EVENT=daemon.planned", "ACCOUNT=default"),
            timeout=30,
            what="the start's planned line",
        )
        assert "next_attempt_at=20" in str(planned[-1]["MESSAGE"])  # ISO, not epoch seconds

    def test_the_unit_hears_logind_and_the_kernels_routes(self, machine: Machine) -> None:
        """Issue 29, under the unit's sandbox: the system bus (logind) and a netlink socket
        (AF_NETLINK in RestrictAddressFamilies=) are reachable, so the installed daemon has both
        event sources and no tick; `config check` says so too."""
        machine.cli("service", "install")
        ready = poll(
            lambda: machine.journal(
                "_SYSTEMD_USER_UNIT=tvmaniac-refreshd.service", "EVENT=daemon.ready"
            ),
            timeout=60,
            what="the daemon's ready line",
        )
        text = json.dumps(ready[-1])
        assert "network: netlink" in text, text
        assert "resume: logind" in text, text
        assert "clock steps: timerfd" in text, text  # allowed by SystemCallFilter, ProtectClock
        check = machine.cli("config", "check")
        expected = "network: netlink; resume: logind; clock steps: timerfd; no periodic tick"
        assert expected in check.stdout

    def test_refreshes_and_logs_fields_to_journald(self, machine: Machine) -> None:
        """The installed daemon refreshes; journald has REFRESH_RESULT and ACCOUNT fields."""
        machine.cli("service", "install")
        entries = poll(
            lambda: machine.journal(
                "_SYSTEMD_USER_UNIT=tvmaniac-refreshd.service",
                "ACCOUNT=default",
                "REFRESH_RESULT=refreshed",
            ),
            timeout=90,
            what="a refresh in the journal",
        )

        assert entries[0]["PRIORITY"] == "6"
        assert entries[0]["EVENT"] == "refresh.finished"
        assert machine.emulator.counters()["invalid_grant"] == 0
        secrets = {CLIENT_SECRET}
        for grant in machine.emulator.state()["grants"]:  # type: ignore[attr-defined]
            secrets |= {grant["access_token"], grant["refresh_token"]}
        text = json.dumps(machine.journal())
        assert [secret for secret in secrets if secret in text] == []

    def test_reload_keeps_it_running(self, machine: Machine) -> None:
        """systemctl --user reload sends SIGHUP; the daemon re-reads and stays active."""
        machine.cli("service", "install")
        machine.systemctl("reload", "tvmaniac-refreshd.service")

        poll(
            lambda: machine.journal("EVENT=daemon.reloaded"),
            timeout=30,
            what="the reload in the journal",
        )
        assert machine.show("tvmaniac-refreshd.service", "ActiveState") == "active"

    def test_reload_with_a_broken_config_fails_and_keeps_it_running(self, machine: Machine) -> None:
        """`systemctl reload` on a broken config fails where the user sees it; the unit stays
        active on its old config, and the daemon's own rejection reads without a literal \\n."""
        machine.cli("service", "install")
        path = "~/.config/tvmaniac-refreshd/config.toml"
        machine.container.run(["sh", "-c", f"cp {path} {path}.good"], user=USER, check=True)
        machine.container.run(["sh", "-c", f"echo 'broken = [' >> {path}"], user=USER, check=True)
        try:
            reload = machine.container.user_systemctl(USER, "reload", "tvmaniac-refreshd.service")
            assert reload.returncode != 0
            assert "tvmaniac-refreshd.service" in reload.stderr
            assert machine.show("tvmaniac-refreshd.service", "ActiveState") == "active"
            # Signalled behind ExecReload='s back, the daemon itself keeps its old config.
            machine.systemctl("kill", "-s", "HUP", "--kill-whom=main", "tvmaniac-refreshd.service")
            rejected = poll(
                lambda: machine.journal("EVENT=daemon.reload_rejected"),
                timeout=30,
                what="the rejected reload in the journal",
            )
            message = str(rejected[-1]["MESSAGE"])
            assert "\\n" not in message
            assert "\n" in message  # each problem on its own line
            assert machine.show("tvmaniac-refreshd.service", "ActiveState") == "active"
        finally:
            machine.container.run(["sh", "-c", f"mv {path}.good {path}"], user=USER, check=True)

    def test_cli_login_is_picked_up_by_the_running_daemon_at_once(self, machine: Machine) -> None:
        """logout and login tell the daemon; its 15-minute tick could not explain the change."""
        machine.cli("service", "install")
        status = "tvmaniac-refreshd.service"
        machine.cli("logout")
        poll(
            lambda: machine.show(status, "StatusText") == "default: not logged in",
            timeout=30,
            what="the daemon to see the logout",
        )
        machine.cli("login")
        poll(
            lambda: machine.show(status, "StatusText").startswith("default: next refresh at "),
            timeout=30,
            what="the daemon to plan the new login",
        )
        account = json.loads(machine.cli("status", "--json").stdout)["accounts"][0]
        assert account["state"] == "active"
        assert "will refresh it when due" in account["advice"]

    def test_watchdog_restarts_a_stopped_daemon(self, machine: Machine) -> None:
        """SIGSTOP: the watchdog kills the silent daemon and systemd restarts it; tokens stay."""
        machine.cli("service", "install")
        drop_in = machine.drop_in(
            "tvmaniac-refreshd.service", "[Service]\nWatchdogSec=3\nRestartSec=1\n"
        )
        try:
            machine.systemctl("daemon-reload")
            machine.systemctl("restart", "tvmaniac-refreshd.service")
            before = int(machine.show("tvmaniac-refreshd.service", "NRestarts"))
            pid = machine.show("tvmaniac-refreshd.service", "MainPID")
            machine.systemctl("kill", "-s", "STOP", "--kill-whom=main", "tvmaniac-refreshd.service")
            poll(
                lambda: (
                    int(machine.show("tvmaniac-refreshd.service", "NRestarts")) > before
                    and machine.show("tvmaniac-refreshd.service", "ActiveState") == "active"
                ),
                timeout=60,
                what="a watchdog restart",
            )
            assert machine.show("tvmaniac-refreshd.service", "MainPID") != pid
            assert json.loads(machine.cli("status", "--json").stdout)["accounts"][0]["state"] in (
                "active",
                "refresh_due",
            )
        finally:
            machine.remove_drop_in(drop_in)

    def test_status_reports_the_service(self, machine: Machine) -> None:
        """`status --json` and `service status` show the installed, active service."""
        machine.cli("service", "install")
        status = json.loads(machine.cli("status", "--json").stdout)

        assert status["service"]["mode"] == "daemon"
        assert status["service"]["active"].startswith("active")
        assert status["daemon"]["running"] is True
        assert "daemon mode; active (running)" in machine.cli("service", "status").stdout


class TestTimerJournalAndStatus:
    def test_a_failed_oneshot_logs_natively_and_service_status_says_so(
        self, machine: Machine
    ) -> None:
        """A 503 in timer mode: a warning entry with ACCOUNT and REFRESH_RESULT, and
        `service status` reports the failed run with its exit status (and "never ran" before)."""
        machine.cli("service", "uninstall")  # a fresh oneshot, with no earlier run
        machine.cli("service", "install", "--mode", "timer")
        try:
            assert "last run: never ran" in machine.cli("service", "status").stdout
            poll(
                lambda: (
                    json.loads(machine.cli("status", "--json").stdout)["accounts"][0]["state"]
                    in ("refresh_due", "expired")
                ),
                timeout=60,
                what="the short-lived token to fall due",
            )
            machine.emulator.add_fault(
                {"kind": "status", "code": 503, "path": "/oauth/token", "count": 5}
            )
            # What the timer does when it fires; `start` waits for the oneshot to finish.
            started = machine.container.user_systemctl(
                USER, "start", "tvmaniac-refreshd-refresh.service"
            )
            assert started.returncode != 0
            assert machine.show("tvmaniac-refreshd-refresh.service", "ExecMainStatus") == "75"

            unit = "_SYSTEMD_USER_UNIT=tvmaniac-refreshd-refresh.service"
            warnings = machine.journal(unit, "ACCOUNT=default", "REFRESH_RESULT=transient")
            assert warnings, machine.container.journal_text(None, unit)
            assert warnings[-1]["PRIORITY"] == "4"
            assert warnings[-1]["EVENT"] == "refresh.finished"
            everything = machine.container.journal(None, unit)
            # Every line the oneshot wrote is ours by name; none is python3's plain text.
            assert {entry.get("SYSLOG_IDENTIFIER") for entry in everything if "_PID" in entry} <= {
                "tvmaniac-refreshd",
                "systemd",
            }

            status = machine.cli("service", "status", check=False)
            shown = status.stdout
            assert "last run: failed (exit status 75, temporary failure" in shown
            assert status.returncode == 1  # the oneshot is failed: scripts see it too
            # In timer mode no daemon plans anything: status promises only the timer.
            account = json.loads(machine.cli("status", "--json").stdout)["accounts"][0]
            assert account["next_attempt_at"] is None
            text = machine.cli("status").stdout
            assert "daemon's next try" not in text
            assert "last run: failed" in text
        finally:
            machine.emulator.clear_faults()
            machine.cli("service", "uninstall")


class TestTimerAndUninstall:
    def test_switch_to_timer(self, machine: Machine) -> None:
        """Timer mode replaces the daemon; the timer fires the oneshot, which refreshes."""
        machine.cli("service", "install")
        # Let the timer fire two seconds after it starts, not within the hour, so the test
        # sees a real firing; the drop-in is in place before the timer is installed.
        drop_in = machine.drop_in(
            "tvmaniac-refreshd-refresh.timer",
            "[Timer]\nOnActiveSec=2\nAccuracySec=1\nRandomizedDelaySec=0\n",
        )
        try:
            machine.cli("service", "uninstall")
            poll(
                lambda: (
                    json.loads(machine.cli("status", "--json").stdout)["accounts"][0]["state"]
                    in ("refresh_due", "expired")
                ),
                timeout=60,
                what="the short-lived token to fall due",
            )
            refreshes = machine.emulator.counters()["refresh_success"]
            machine.cli("service", "install", "--mode", "timer")
            ours = [name for name in machine.unit_files() if name.startswith("tvmaniac")]
            assert ours == [
                "tvmaniac-refreshd-refresh.service",
                "tvmaniac-refreshd-refresh.timer",
                "tvmaniac-refreshd-refresh.timer.d",
            ]
            assert machine.show("tvmaniac-refreshd.service", "LoadState") == "not-found"
            poll(
                lambda: (
                    machine.emulator.counters()["refresh_success"] > refreshes
                    and machine.show("tvmaniac-refreshd-refresh.service", "ActiveState")
                    == "inactive"
                ),
                timeout=60,
                what="the timer's oneshot to refresh",
            )
            assert machine.show("tvmaniac-refreshd-refresh.service", "ExecMainStatus") == "0"
            assert machine.show("tvmaniac-refreshd-refresh.service", "Result") == "success"
            assert machine.show("tvmaniac-refreshd-refresh.timer", "ActiveState") == "active"
        finally:
            machine.remove_drop_in(drop_in)

    def test_uninstall_twice_leaves_nothing(self, machine: Machine) -> None:
        """Uninstall stops and removes everything, and a second run is a no-op."""
        machine.cli("service", "install", "--mode", "timer")
        machine.cli("service", "uninstall")
        second = machine.cli("service", "uninstall")

        assert "nothing to do" in second.stdout
        assert [name for name in machine.unit_files() if name.startswith("tvmaniac")] == []
        listed = machine.systemctl("list-unit-files", "tvmaniac*", "--no-legend")
        assert listed == ""


class TestJobTimers:
    def test_timer_mode_runs_a_job_with_journal_fields(self, machine: Machine) -> None:
        """A [jobs.sync] gets its own timer and oneshot; the run logs the job's output with
        JOB=sync, the token reaches the job's environment, and uninstall removes them."""
        config_path = "~/.config/tvmaniac-refreshd/config.toml"
        before = machine.container.run(["sh", "-c", f"cat {config_path}"], user=USER).stdout
        job = (
            "[jobs.sync]\n"
            'command = ["sh", "-c", "printf %s \\"$ACCESS_TOKEN\\" | sha256sum; echo job-ran"]\n'
            # The fixture's tokens live 20 s: the default min_valid (the timeout) could not
            # be met.
            'every = "6h"\ntimeout = "2m"\nmin_valid = "5s"\n'
        )
        machine.container.run(
            ["sh", "-c", f"umask 077 && cat >> {config_path}"], user=USER, input=job, check=True
        )
        try:
            machine.cli("service", "install", "--mode", "timer")
            ours = [name for name in machine.unit_files() if name.startswith("tvmaniac")]
            assert "tvmaniac-refreshd-job-sync.service" in ours
            assert "tvmaniac-refreshd-job-sync.timer" in ours
            assert machine.show("tvmaniac-refreshd-job-sync.timer", "ActiveState") == "active"
            # What the timer does when it fires; `start` waits for the oneshot to finish.
            machine.systemctl("start", "tvmaniac-refreshd-job-sync.service")
            unit = "_SYSTEMD_USER_UNIT=tvmaniac-refreshd-job-sync.service"
            status = machine.show("tvmaniac-refreshd-job-sync.service", "ExecMainStatus")
            assert status == "0", machine.container.journal_text(None, unit)

            lines = machine.journal(unit, "JOB=sync", "EVENT=job.output")
            texts = [str(entry.get("LINE")) for entry in lines]
            assert "job-ran" in texts, machine.container.journal_text(None, unit)
            token = machine.cli("token").stdout.strip()
            assert hashlib.sha256(token.encode()).hexdigest() in " ".join(texts)
            finished = machine.journal(unit, "JOB=sync", "EVENT=job.finished")
            assert finished[-1]["RESULT"] == "done"
            everything = json.dumps(machine.container.journal(None, unit))
            assert token not in everything
            listed = json.loads(machine.cli("job", "list", "--json").stdout)["jobs"][0]
            assert listed["last_result"] == "done"

            machine.cli("service", "uninstall")
            assert not [n for n in machine.unit_files() if n.startswith("tvmaniac-refreshd-job")]
        finally:
            machine.container.run(
                ["sh", "-c", f"umask 077 && cat > {config_path}"],
                user=USER,
                input=before,
                check=True,
            )
            machine.cli("service", "uninstall")

    def test_timer_mode_retries_a_75_by_a_transient_timer(self, machine: Machine) -> None:
        """systemd refuses RestartForceExitStatus= on a oneshot: `job run` arms a transient
        timer after the account's backoff, which starts the job's oneshot again."""
        config_path = "~/.config/tvmaniac-refreshd/config.toml"
        before = machine.container.run(["sh", "-c", f"cat {config_path}"], user=USER).stdout
        script = 'echo run >> ~/flaky-runs; exit "$(cat ~/flaky-code)"'
        job = (
            '[retry]\ninitial = "2s"\nmaximum = "2s"\n'
            "[jobs.flaky]\n"
            f"command = {json.dumps(['sh', '-c', script])}\n"
            'every = "6h"\ntimeout = "1m"\nmin_valid = "5s"\n'
        )
        machine.container.run(
            [
                "sh",
                "-c",
                f"umask 077 && cat >> {config_path} && rm -f ~/flaky-runs "
                "~/.local/state/tvmaniac-refreshd/jobs/flaky.json && echo 75 > ~/flaky-code",
            ],
            user=USER,
            input=job,
            check=True,
        )
        service = "tvmaniac-refreshd-job-flaky.service"
        try:
            machine.cli("service", "install", "--mode", "timer")
            machine.systemctl("start", service)  # waits for the oneshot: it exits 75
            assert machine.show(service, "ExecMainStatus") == "75"
            armed = machine.journal("JOB=flaky", "EVENT=job.retry_armed")
            assert armed, machine.container.journal_text(None, f"_UID={machine.uid}")[-4000:]
            machine.container.run(["sh", "-c", "echo 0 > ~/flaky-code"], user=USER, check=True)

            def runs() -> int:
                out = machine.container.run(["cat", "/home/tok/flaky-runs"], user=USER).stdout
                return len(out.split())

            poll(lambda: runs() >= 2, timeout=60, what="the retry's run")
            poll(
                lambda: '"last_result": "done"' in machine.cli("job", "list", "--json").stdout,
                timeout=60,
                what="the retry's record",
            )
        finally:
            machine.container.run(
                ["sh", "-c", f"umask 077 && cat > {config_path}"],
                user=USER,
                input=before,
                check=True,
            )
            machine.cli("service", "uninstall")

    def test_daemon_mode_runs_a_job_outside_its_sandbox_without_the_token_in_a_unit(
        self, machine: Machine
    ) -> None:
        """The daemon (ProtectHome=tmpfs, MemoryDenyWriteExecute...) starts each job as a
        transient unit running `job run NAME`: the job writes to the user's real home, and no
        token is in a unit file, an argv or the journal."""
        config_path = "~/.config/tvmaniac-refreshd/config.toml"
        before = machine.container.run(["sh", "-c", f"cat {config_path}"], user=USER).stdout
        script = (
            "cat /run/user/$(id -u)/systemd/transient/*.service > ~/units.txt 2>&1; "
            "for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' < $f; echo; done > ~/argv.txt; "
            'printf %s "$ACCESS_TOKEN" | sha256sum > ~/job-wrote; echo daemon-job-ran'
        )
        job = (
            "[jobs.cache]\n"
            f"command = {json.dumps(['sh', '-c', script])}\n"
            'every = "6h"\ntimeout = "1m"\nmin_valid = "5s"\n'
        )
        machine.container.run(
            [
                "sh",
                "-c",
                f"umask 077 && cat >> {config_path} && rm -f ~/job-wrote "
                "~/.local/state/tvmaniac-refreshd/jobs/cache.json",
            ],
            user=USER,
            input=job,
            check=True,
        )
        try:
            machine.cli("service", "install")  # daemon mode: never run, so it runs at start
            try:
                poll(
                    lambda: machine.container.run(["cat", "/home/tok/job-wrote"], user=USER).stdout,
                    timeout=90,
                    what="the job's file in the user's home",
                )
            except AssertionError as exc:
                said = machine.container.journal_text(None, f"_UID={machine.uid}")
                raise AssertionError(f"{exc}\n{said[-6000:]}") from None
            finished = poll(
                lambda: machine.journal("JOB=cache", "EVENT=job.finished"),
                timeout=60,
                what="the job's finished line",
            )
            assert finished[-1]["RESULT"] == "done"
            assert str(finished[-1]["_SYSTEMD_USER_UNIT"]).startswith(
                "tvmaniac-refreshd-job-cache-"
            )
            units = machine.container.run(["cat", "/home/tok/units.txt"], user=USER).stdout
            assert '"job" "run" "cache"' in units  # its own unit file, read while it ran
            argv = machine.container.run(["cat", "/home/tok/argv.txt"], user=USER).stdout

            def listed() -> dict[str, object]:
                return dict(json.loads(machine.cli("job", "list", "--json").stdout)["jobs"][0])

            poll(lambda: listed()["last_result"] == "done", timeout=60, what="the job's record")
            assert listed()["last_exit_code"] == 0
            journal = json.dumps(machine.container.journal(None, f"_UID={machine.uid}"))
            assert "daemon-job-ran" in journal
            tokens = {
                secret
                for grant in machine.emulator.state()["grants"]  # type: ignore[attr-defined]
                for secret in (
                    grant["access_token"],
                    grant["refresh_token"],
                    *grant["rotated_access_tokens"],
                    *grant["rotated_refresh_tokens"],
                )
            }
            for token in tokens:
                assert token not in units
                assert token not in argv
                assert token not in journal
        finally:
            machine.container.run(
                ["sh", "-c", f"umask 077 && cat > {config_path}"],
                user=USER,
                input=before,
                check=True,
            )
            machine.cli("service", "uninstall")


# Run inside a transient unit with the installed unit's hardening: keyring round trips (direct,
# and keyring's own backend with its cryptography session) and an HTTPS request through httpx.
HARDENED_SCRIPT = """
import datetime, http.server, ssl, tempfile, threading
from pathlib import Path
import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from keyring.backends import SecretService
from tvmaniac_refreshd.storage.secret_service import delete_item, read_item, write_item

write_item("mdwe-proof", "u", "direct")
assert read_item("mdwe-proof", "u") == "direct"
backend = SecretService.Keyring()
backend.set_password("mdwe-proof", "u", "through keyring")
assert backend.get_password("mdwe-proof", "u") == "through keyring"
delete_item("mdwe-proof", "u")

key = ec.generate_private_key(ec.SECP256R1())
name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
now = datetime.datetime.now(datetime.timezone.utc)
cert = (
    x509.CertificateBuilder().subject_name(name).issuer_name(name)
    .public_key(key.public_key()).serial_number(1)
    .not_valid_before(now - datetime.timedelta(days=1))
    .not_valid_after(now + datetime.timedelta(days=1))
    .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
    .sign(key, hashes.SHA256())
)
folder = Path(tempfile.mkdtemp())
(folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
(folder / "key.pem").write_bytes(key.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))

class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "5")
        self.end_headers()
        self.wfile.write(b"hello")

server = http.server.HTTPServer(("127.0.0.1", 0), Hello)
served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
served.load_cert_chain(folder / "cert.pem", folder / "key.pem")
server.socket = served.wrap_socket(server.socket, server_side=True)
threading.Thread(target=server.serve_forever, daemon=True).start()
trusted = ssl.create_default_context(cafile=str(folder / "cert.pem"))
answer = httpx.get(f"https://localhost:{server.server_port}/", verify=trusted)
print("hardened:", answer.status_code, answer.text)
"""


def unit_hardening(uid: int | None = None) -> list[str]:
    """The daemon unit's sandboxing lines (PrivateUsers= to the end), as `-p` options.

    A transient unit takes no specifiers: %h and %t are spelled out for the test user.
    """
    text = (REPO / "systemd" / "tvmaniac-refreshd.service").read_text()
    lines = text[text.index("\nPrivateUsers=") : text.index("[Install]")].splitlines()
    lines = [
        line.replace("%h", f"/home/{USER}").replace("%t", f"/run/user/{uid}") for line in lines
    ]
    # As `service install` renders it: a checkout under /tmp (a CI clone) is bound back in.
    binds = private_tmp_binds([sys.executable, str(REPO)])
    lines += [f"BindReadOnlyPaths={' '.join(binds)}"] if binds else []
    return [f"-p{line}" for line in lines if line and not line.startswith("#")]


class TestHardening:
    def test_units_deny_writable_executable_memory(self, machine: Machine) -> None:
        machine.cli("service", "install")
        try:
            assert machine.show("tvmaniac-refreshd.service", "MemoryDenyWriteExecute") == "yes"
        finally:
            machine.cli("service", "uninstall")
        assert "-pMemoryDenyWriteExecute=yes" in unit_hardening()

    def test_keyring_and_https_work_under_the_units_hardening(self, machine: Machine) -> None:
        """R6: a Secret Service round trip and an HTTPS request under MemoryDenyWriteExecute."""
        result = hardened(machine, HARDENED_SCRIPT)

        assert result.returncode == 0, result.stderr[-3000:]
        assert result.stdout.strip() == "hardened: 200 hello"

    def test_a_refresh_works_under_the_units_sandbox(self, machine: Machine) -> None:
        """Issue 13: the state and lock directories stay writable under ProtectSystem=strict."""
        machine.container.run(
            ["sh", "-c", "mkdir -p ~/.local/state/tvmaniac-refreshd"], user=USER, check=True
        )
        result = hardened_argv(
            machine, [machine.container.python, "-m", "tvmaniac_refreshd", "refresh", "--force"]
        )

        assert result.returncode == 0, result.stderr[-3000:]
        assert "default: refreshed" in result.stdout

    def test_the_sandbox_is_enforced(self, machine: Machine) -> None:
        """The control: the home is hidden but for the config (read-only) and the state,
        /tmp private, no capability left, own user ns. Issue 24: with ProtectHome=read-only
        the daemon and its hooks could read ~/.ssh and ~/.gnupg."""
        marker = "/tmp/outside-the-sandbox"  # noqa: S108  # the container's /tmp, on purpose
        machine.container.run(["touch", marker], user=USER, check=True)
        machine.container.run(
            [
                "sh",
                "-c",
                "mkdir -p ~/.ssh ~/.local/state/tvmaniac-refreshd && umask 077 && "
                "echo private > ~/.ssh/id_test && rm -f ~/written",
            ],
            user=USER,
            check=True,
        )
        result = hardened(
            machine,
            "import os\n"
            "home = os.path.expanduser('~')\n"
            "print('ssh', os.path.exists(home + '/.ssh/id_test'))\n"
            "print('config', os.path.exists(home + '/.config/tvmaniac-refreshd/config.toml'))\n"
            "try:\n"
            "    open(home + '/.config/tvmaniac-refreshd/written', 'w')\n"
            "except OSError as exc:\n"
            "    print('config', exc.errno)\n"
            "open(home + '/.local/state/tvmaniac-refreshd/written', 'w').close()\n"
            "open(home + '/written', 'w').close()  # into the unit's own tmpfs\n"
            "print('tmp', os.path.exists('/tmp/outside-the-sandbox'))\n"
            "status = dict(line.split(':', 1) for line in open('/proc/self/status'))\n"
            "print('capabilities', status['CapBnd'].strip())\n"
            "print('users', ' '.join(open('/proc/self/uid_map').read().split()))\n",
        )

        assert result.returncode == 0, result.stderr[-3000:]
        assert result.stdout.splitlines() == [
            "ssh False",
            "config True",
            "config 30",  # EROFS
            "tmp False",
            "capabilities 0000000000000000",
            f"users {machine.uid} {machine.uid} 1",
        ]
        outside = machine.container.run(
            ["sh", "-c", "ls ~/written ~/.local/state/tvmaniac-refreshd/written"], user=USER
        )
        assert outside.stdout.split() == ["/home/tok/.local/state/tvmaniac-refreshd/written"]

    def test_an_installation_under_the_home_still_starts(self, machine: Machine) -> None:
        """ProtectHome=tmpfs hides the home, so `service install` binds a venv there back in
        (as the README's install and pipx put it under ~/.local/share), and a --config there."""
        venv = f"/home/{USER}/.local/share/tvmaniac-refreshd/venv"
        site = next(Path(sys.prefix).glob("lib/python3*/site-packages"))
        pth = f"{venv}/lib/python3.{sys.version_info.minor}/site-packages/refreshd-test.pth"
        machine.container.run(
            [
                "sh",
                "-c",
                f"/usr/bin/python3 -m venv --without-pip {venv} && "
                f"printf '%s\\n' {REPO} {site} > {pth} && "
                "cp ~/.config/tvmaniac-refreshd/config.toml ~/elsewhere.toml",
            ],
            user=USER,
            check=True,
        )
        python = f"{venv}/bin/python"
        try:
            install = machine.container.run(
                [
                    python,
                    "-m",
                    "tvmaniac_refreshd",
                    "--config",
                    f"/home/{USER}/elsewhere.toml",
                    "service",
                    "install",
                ],
                user=USER,
            )
            assert install.returncode == 0, install.stderr
            unit = machine.container.run(
                ["cat", f"{UNIT_DIR}/tvmaniac-refreshd.service"], user=USER, check=True
            ).stdout
            assert f"BindReadOnlyPaths=-{venv} -/home/{USER}/elsewhere.toml\n" in unit, unit
            poll(
                lambda: machine.show("tvmaniac-refreshd.service", "StatusText").startswith(
                    "default: "
                ),
                timeout=60,
                what="the daemon from the venv under the home to be ready",
            )
        finally:
            machine.container.run(
                [python, "-m", "tvmaniac_refreshd", "service", "uninstall"], user=USER
            )

    def test_the_hardening_is_enforced(self, machine: Machine) -> None:
        """The control: the same transient unit refuses writable and executable memory."""
        result = hardened(
            machine,
            "import mmap\n"
            "try:\n"
            "    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)\n"
            "except OSError as exc:\n"
            "    print('refused', exc.errno)\n",
        )

        assert result.returncode == 0, result.stderr[-3000:]
        assert result.stdout.split()[0] == "refused"


def hardened(machine: Machine, script: str) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in a transient user unit with the daemon unit's hardening."""
    return hardened_argv(machine, [machine.container.python, "-c", script])


def hardened_argv(machine: Machine, argv: list[str]) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` in a transient user unit with the daemon unit's hardening."""
    return machine.container.run(
        [
            "systemd-run",
            "--user",
            "--wait",
            "--pipe",
            "--quiet",
            *unit_hardening(machine.uid),
            f"-pEnvironment=DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/{machine.uid}/bus",
            *argv,
        ],
        user=USER,
        timeout=120,
    )
