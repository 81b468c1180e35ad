"""[jobs.NAME] through the real command: `job run`, `job list` and the daemon's own schedule,
with the emulator, a real keyring, and a job script that uses the token against the emulator."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.harness import CLIENT_ID, Harness, Run, wait_until
from tvmaniac_refreshd.storage.job_state import JobStates

# What the job does: call the emulator with the token, say what it saw, exit as told.
JOB_SCRIPT = """\
import hashlib, json, os, sys, urllib.request
token = os.environ.get("SYNC_TOKEN", "")
request = urllib.request.Request(
    sys.argv[1] + "/users/settings",
    headers={"Authorization": "Bearer " + token, "trakt-api-key": sys.argv[2],
             "trakt-api-version": "2", "Content-Type": "application/json"},
)
try:
    status = urllib.request.urlopen(request, timeout=10).status
except urllib.error.HTTPError as error:
    status = error.code
out = sys.argv[3]
seen = json.loads(open(out).read()) if os.path.exists(out) else []
seen.append({"status": status, "digest": hashlib.sha256(token.encode()).hexdigest(),
             "argv": sys.argv, "pid": os.getpid()})
open(out, "w").write(json.dumps(seen))
print("synced with status", status, flush=True)
code_file = sys.argv[4]
sys.exit(int(open(code_file).read()) if os.path.exists(code_file) else 0)
"""


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Rig:
    """The harness with one job, ``sync``, whose runs are recorded in ``out``."""

    def __init__(self, harness: Harness, tmp_path: Path, extra: str = "") -> None:
        self.harness = harness
        self.out = tmp_path / "runs.json"
        self.code = tmp_path / "exit-code"
        self.hook = tmp_path / "hook.out"
        script = tmp_path / "job.py"
        script.write_text(JOB_SCRIPT)
        command = [sys.executable, str(script), harness.emulator.url, CLIENT_ID]
        command += [str(self.out), str(self.code)]
        harness.extra_config = (
            "[alerts]\ndesktop = false\n"
            f'on_reauth_required = ["sh", "-c", "echo $TVMANIAC_REFRESHD_EVENT >> {self.hook}"]\n'
            '[daemon]\ntick = "1s"\n'
            "[jobs.sync]\n"
            f"command = {json.dumps(command)}\n"
            'every = "6h"\ntimeout = "2m"\nenv = "SYNC_TOKEN"\n' + extra
        )
        harness.write_config()

    def runs(self) -> list[dict[str, object]]:
        return json.loads(self.out.read_text()) if self.out.exists() else []

    def listed(self) -> dict[str, object]:
        run = self.harness.run("job", "list", "--json")
        assert run.code == 0, run.err
        return dict(json.loads(run.out)["jobs"][0])


@pytest.fixture
def rig(harness: Harness, tmp_path: Path) -> Rig:
    made = Rig(harness, tmp_path)
    harness.seed()
    return made


def stored_access_token(harness: Harness) -> str:
    stored = harness.stored()
    assert stored is not None
    return str(stored["access_token"])


def test_job_run_gets_a_valid_token_in_its_environment_only(rig: Rig) -> None:
    run = rig.harness.run("job", "run", "sync")

    assert run.code == 0, run.err
    [seen] = rig.runs()
    assert seen["status"] == 200  # the emulator took the token
    token = stored_access_token(rig.harness)
    assert seen["digest"] == digest(token)
    assert not any(token in str(word) for word in list(seen["argv"]))  # type: ignore[call-overload]
    assert "synced with status 200" in run.err  # the output, logged with the job's name
    assert "job=sync" in run.err
    listed = rig.listed()
    assert listed["last_result"] == "done"
    assert listed["last_exit_code"] == 0
    assert isinstance(listed["next_run_at"], int)


def test_job_run_refreshes_first_when_the_token_would_not_outlive_the_run(
    harness: Harness, tmp_path: Path
) -> None:
    """A token with less life left than the job's timeout is refreshed before the job starts."""
    rig = Rig(harness, tmp_path)
    harness.seed(expires_in=3600, age=3600 - 60)  # one minute left; the timeout is 2m
    run = harness.run("job", "run", "sync")

    assert run.code == 0, run.err
    assert harness.emulator.counters()["refresh_success"] == 1
    [seen] = rig.runs()
    assert seen["status"] == 200
    assert seen["digest"] == digest(stored_access_token(harness))


def test_exit_75_is_retried_with_backoff(rig: Rig) -> None:
    rig.code.write_text("75")
    run = rig.harness.run("job", "run", "sync")

    assert run.code == 75
    listed = rig.listed()
    assert listed["last_result"] == "retry"
    # The retry comes after the account's [retry] backoff (60 s..15 min by default), not 6 h.
    assert isinstance(listed["next_run_at"], int)
    assert isinstance(listed["last_run_at"], int)
    assert 30 <= listed["next_run_at"] - listed["last_run_at"] <= 900 + 5


def test_exit_77_fires_on_reauth_required(rig: Rig) -> None:
    rig.code.write_text("77")
    run = rig.harness.run("job", "run", "sync")

    assert run.code == 77
    assert rig.hook.read_text().split() == ["reauth_required"]
    assert rig.listed()["last_result"] == "login_needed"


def test_exit_77_in_timer_mode_alerts_once_like_a_refresh(rig: Rig) -> None:
    """Each timer firing is a process: the reminder lives in the state file, so a job that
    keeps exiting 77 fires on_reauth_required once per [alerts] remind_every, not per run."""
    rig.code.write_text("77")
    first = rig.harness.run("job", "run", "sync")
    second = rig.harness.run("job", "run", "sync")

    assert (first.code, second.code) == (77, 77)
    assert rig.hook.read_text().split() == ["reauth_required"]


def test_job_run_waits_for_the_network_when_asked(rig: Rig) -> None:
    """--wait-for-network: offline at the start, the run waits and goes ahead when the link
    comes back (what the timer's oneshot does), instead of exiting 75 at once."""
    from tests.support.system_bus import private_system_bus  # noqa: PLC0415

    with private_system_bus() as bus:
        manager = bus.start("NetworkManager")
        manager.send("state 20")
        log = rig.out.parent / "job-run.log"
        with log.open("w") as sink:
            process = subprocess.Popen(
                rig.harness.command("job", "run", "--wait-for-network", "2m", "sync"),
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=sink,
                env=rig.harness.env(**bus.env),
            )
        try:
            wait_until(
                lambda: "job.network_wait" in log.read_text(),
                timeout=60,
                what="the run to wait for the network",
            )
            assert rig.runs() == []
            manager.send("state 70")
            code = process.wait(timeout=120)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)
    assert code == 0, log.read_text()
    assert len(rig.runs()) == 1
    assert stored_access_token(rig.harness) not in log.read_text()


def test_a_timeout_kills_the_whole_process_group(harness: Harness, tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    harness.extra_config = (
        "[jobs.stuck]\n"
        f'command = ["sh", "-c", "sleep 600 & echo $! > {pids}; echo $$ >> {pids}; wait"]\n'
        'every = "1h"\ntimeout = "1s"\nmin_valid = "1m"\n'
    )
    harness.write_config()
    harness.seed()
    run = harness.run("job", "run", "stuck")

    assert run.code == 1
    assert "timed_out" in run.out
    for pid in map(int, pids.read_text().split()):

        def gone(pid: int = pid) -> bool:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            # A zombie of the reaped group, not yet collected by its (gone) parent's reaper.
            return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"

        wait_until(gone, timeout=30, what=f"process {pid} to be killed")


def test_job_without_login_exits_77_and_never_starts(rig: Rig) -> None:
    rig.harness.run("logout", "--local")
    run = rig.harness.run("job", "run", "sync")

    assert run.code == 77
    assert rig.runs() == []


def test_a_bad_job_is_reported_with_the_other_problems(harness: Harness) -> None:
    harness.extra_config = (
        '[jobs.bad]\ncommand = "a string"\nnetwork = "wifi"\naccount = "nobody"\n'
        '[jobs.worse]\ncommand = ["true"]\nevery = "1h"\nat = "25:00"\n'
    )
    harness.write_config()
    run = harness.run("config", "check")

    assert run.code == 78
    for key in (
        "jobs.bad.command",
        "jobs.bad.network",
        "jobs.bad.account",
        "jobs.bad.every",
        "jobs.worse.at",
    ):
        assert key in run.out


class Daemon:
    """A running `tvmaniac-refreshd run` with a notify socket, as in test_daemon."""

    def __init__(self, harness: Harness, tmp_path: Path) -> None:
        self.harness = harness
        self.socket_path = tmp_path / "notify.sock"
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind(str(self.socket_path))
        self.socket.settimeout(60)
        self.process = harness.spawn("run", env=harness.env(NOTIFY_SOCKET=str(self.socket_path)))
        while not self.socket.recv(4096).decode().startswith("READY=1"):
            pass

    def stop(self) -> Run:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        run = self.harness.finish(self.process, ("run",), timeout=30)
        self.socket.close()
        return run


@pytest.fixture
def daemon(rig: Rig, tmp_path: Path) -> Iterator[Daemon]:
    running = Daemon(rig.harness, tmp_path)
    yield running
    running.stop()


def test_the_daemon_runs_the_job_on_schedule(rig: Rig, daemon: Daemon) -> None:
    """Never run before: the daemon runs it at start, then plans the next run one period on."""
    wait_until(rig.runs, timeout=60, what="the job's first run")
    wait_until(lambda: rig.listed()["last_result"] == "done", timeout=30, what="its record")
    run = daemon.stop()

    assert run.code == 0
    [seen] = rig.runs()
    assert seen["status"] == 200
    token = stored_access_token(rig.harness)
    assert seen["digest"] == digest(token)
    assert "job=sync" in run.err
    assert "synced with status 200" in run.err
    assert token not in run.err
    listed = rig.listed()
    assert listed["next_run_at"] - listed["last_run_at"] >= 6 * 3600 - 5  # type: ignore[operator]


def test_the_daemon_retries_a_job_that_exits_75(harness: Harness, tmp_path: Path) -> None:
    rig = Rig(harness, tmp_path, extra='[retry]\ninitial = "1s"\nmaximum = "1s"\n')
    harness.seed()
    rig.code.write_text("75")
    running = Daemon(harness, tmp_path)
    try:
        wait_until(lambda: len(rig.runs()) >= 2, timeout=60, what="a retry of the job")
        rig.code.write_text("0")
        wait_until(lambda: rig.listed()["last_result"] == "done", timeout=60, what="success")
    finally:
        run = running.stop()
    assert run.code == 0
    assert "result=retry" in run.err


def test_a_job_that_prints_its_token_has_it_redacted_in_the_log(harness: Harness) -> None:
    harness.extra_config = (
        '[jobs.leaky]\ncommand = ["sh", "-c", "echo token is $ACCESS_TOKEN"]\nevery = "1h"\n'
    )
    harness.write_config()
    harness.seed()
    run = harness.run("job", "run", "leaky")

    assert run.code == 0, run.err
    assert "token is" in run.err
    # The harness's own check (no secret in any output) runs at the end of every test.


def test_offline_the_daemon_defers_the_job_and_runs_it_when_the_link_returns(
    rig: Rig, tmp_path: Path
) -> None:
    """NetworkManager (issue 29's faithful fake on a private system bus) says disconnected:
    the job waits without counting as a failure; its StateChanged to connected runs it."""
    from tests.support.system_bus import private_system_bus  # noqa: PLC0415

    with private_system_bus() as bus:
        manager = bus.start("NetworkManager")
        manager.send("state 20")  # NM_STATE_DISCONNECTED
        log = tmp_path / "daemon.log"
        with log.open("w") as sink:
            process = subprocess.Popen(
                rig.harness.command("run"),
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=sink,
                env=rig.harness.env(**bus.env),
            )
        try:
            wait_until(
                lambda: rig.listed()["last_result"] == "waiting_for_network",
                timeout=60,
                what="the job to wait for the network",
            )
            assert rig.runs() == []
            manager.send("state 70")  # NM_STATE_CONNECTED_GLOBAL
            wait_until(
                lambda: rig.listed()["last_result"] == "done",
                timeout=60,
                what="the job once NetworkManager says connected",
            )
        finally:
            process.terminate()
            process.wait(timeout=60)
    text = log.read_text()
    assert "job.waiting_for_network" in text
    assert "job.network_returned" in text
    [seen] = rig.runs()
    assert seen["status"] == 200
    assert rig.listed()["last_exit_code"] == 0
    assert stored_access_token(rig.harness) not in text


def test_job_run_offline_exits_75_without_running_and_runs_once_online(rig: Rig) -> None:
    """What timer mode's oneshot does: NetworkManager says disconnected, so the job is not run
    (75, recorded as waiting); connected again, the next firing runs it."""
    from tests.support.system_bus import private_system_bus  # noqa: PLC0415

    with private_system_bus() as bus:
        manager = bus.start("NetworkManager")
        manager.send("state 20")
        offline = rig.harness.run("job", "run", "sync", env=rig.harness.env(**bus.env))
        assert offline.code == 75, offline.err
        assert rig.runs() == []
        assert rig.listed()["last_result"] == "waiting_for_network"
        manager.send("state 70")
        online = rig.harness.run("job", "run", "sync", env=rig.harness.env(**bus.env))
    assert online.code == 0, online.err
    assert len(rig.runs()) == 1
    assert rig.listed()["last_result"] == "done"


# A job that checks its token at the emulator, says it started, waits to be released (a bounded
# poll for a file), then checks the same token again: valid for its whole run or not.
HOLD_SCRIPT = """\
import hashlib, json, os, sys, time, urllib.request
token = os.environ["SYNC_TOKEN"]
def check():
    request = urllib.request.Request(
        sys.argv[1] + "/users/settings",
        headers={"Authorization": "Bearer " + token, "trakt-api-key": sys.argv[2],
                 "trakt-api-version": "2", "Content-Type": "application/json"},
    )
    try:
        return urllib.request.urlopen(request, timeout=10).status
    except urllib.error.HTTPError as error:
        return error.code
first = check()
open(sys.argv[4], "w").write("started")
deadline = time.monotonic() + 300
while not os.path.exists(sys.argv[5]) and time.monotonic() < deadline:
    time.sleep(0.05)
last = check()
open(sys.argv[3], "w").write(json.dumps(
    {"statuses": [first, last], "digest": hashlib.sha256(token.encode()).hexdigest()}))
sys.exit(0 if first == last == 200 else 1)
"""


class Holder:
    """A job, ``hold``, run by `job run` in its own process, that holds until released."""

    def __init__(self, harness: Harness, tmp_path: Path) -> None:
        self.harness = harness
        self.out = tmp_path / "held.json"
        self.started = tmp_path / "started"
        self.release_file = tmp_path / "release"
        script = tmp_path / "hold.py"
        script.write_text(HOLD_SCRIPT)
        command = [sys.executable, str(script), harness.emulator.url, CLIENT_ID]
        command += [str(self.out), str(self.started), str(self.release_file)]
        harness.extra_config = (
            '[alerts]\ndesktop = false\n[daemon]\ntick = "1s"\n'
            f"[jobs.hold]\ncommand = {json.dumps(command)}\n"
            'every = "6h"\ntimeout = "5m"\nenv = "SYNC_TOKEN"\n'
        )
        harness.write_config()
        # A refresh waits this long for a running job before it gives up (exit 75).
        text = harness.config_path.read_text().replace(
            'lock_timeout = "30s"', 'lock_timeout = "1s"'
        )
        harness.write_config(text)
        harness.seed()
        self.process = harness.spawn("job", "run", "hold")
        wait_until(self.started.exists, timeout=60, what="the job to start")

    def release(self) -> Run:
        self.release_file.write_text("go")
        return self.harness.finish(self.process, ("job", "run", "hold"), timeout=120)

    def seen(self) -> dict[str, object]:
        return dict(json.loads(self.out.read_text()))


def make_due(harness: Harness) -> None:
    """Rewrite the stored pair as if it were issued long ago: due now, by our clock, while the
    emulator still takes its access token (the job's)."""
    stored = harness.stored()
    assert stored is not None
    lifetime = int(stored["expires_in"])  # type: ignore[call-overload]
    created = int(time.time()) - lifetime + 60
    stored.update(created_at=created, expires_at=created + lifetime, obtained_at=created)
    harness.put_item("default", json.dumps(stored))


def test_refresh_force_waits_for_a_running_job_then_exits_75(
    harness: Harness, tmp_path: Path
) -> None:
    """The job holds the account's in-use lock: `refresh --force` from another process spends
    nothing while it runs, says which job it waited for and exits 75; the job's token stayed
    valid at the emulator from start to end; once the job ended the refresh goes through."""
    holder = Holder(harness, tmp_path)
    token = stored_access_token(harness)
    forced = harness.run("refresh", "--force")

    assert forced.code == 75, forced.err
    assert "job hold" in forced.err
    assert "a job is running with account 'default'" in forced.err
    assert harness.emulator.counters()["refresh_success"] == 0
    finished = holder.release()
    assert finished.code == 0, finished.err
    seen = holder.seen()
    assert seen["statuses"] == [200, 200]
    assert seen["digest"] == digest(token)
    again = harness.run("refresh", "--force")
    assert again.code == 0, again.err
    assert harness.emulator.counters()["refresh_success"] == 1


def test_the_daemons_due_refresh_waits_for_the_job_and_follows_its_end(
    harness: Harness, tmp_path: Path
) -> None:
    """A job of another process (a timer's `job run`) holds the token when the daemon finds the
    account due: the refresh waits (status: waiting for job hold; not a failure) and happens
    right after the job ends, without waiting for a periodic look."""
    holder = Holder(harness, tmp_path)
    token = stored_access_token(harness)
    JobStates(harness.state_dir / "jobs").update("hold", next_run_at=int(time.time()) + 6 * 3600)
    make_due(harness)
    running = Daemon(harness, tmp_path)
    try:

        def waiting() -> bool:
            status = harness.run("status", "--json")
            [account] = json.loads(status.out)["accounts"]
            return bool(account.get("waiting_for") == "job:hold")

        wait_until(waiting, timeout=60, what="the refresh to wait for the job")
        assert "refresh waiting for job hold to end" in harness.run("status").out
        assert harness.emulator.counters()["refresh_success"] == 0
        assert stored_access_token(harness) == token
        finished = holder.release()
        assert finished.code == 0, finished.err
        wait_until(
            lambda: harness.emulator.counters()["refresh_success"] == 1,
            timeout=60,
            what="the refresh after the job",
        )
    finally:
        run = running.stop()
    assert run.code == 0
    assert "daemon.waiting_for_job" in run.err
    assert "daemon.retry_planned" not in run.err  # deferred, never a failure
    seen = holder.seen()
    assert seen["statuses"] == [200, 200]
    assert seen["digest"] == digest(token)
    assert stored_access_token(harness) != token
