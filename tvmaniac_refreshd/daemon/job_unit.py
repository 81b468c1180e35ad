"""A daemon-mode job run outside the daemon's sandbox: a transient unit of the user's manager.

The daemon's unit is sandboxed (ProtectHome=tmpfs, PrivateTmp, MemoryDenyWriteExecute...),
which suits the process that holds the tokens, not a user's job: it must write its cache under
~ and may be a JIT runtime (node, java). So from inside that unit the daemon starts
``systemd-run --user --wait ... -- tvmaniac-refreshd job run NAME``: the `job run` process,
outside the sandbox, gets the token itself (the same rules as timer mode: the in-use lock, the
token window, the record, the alerts), so the token is never in the transient unit's file, its
argv, its environment as systemd holds it, nor in the daemon. The unit's exit status is the
job's (0, 75, 77, other), which ``--wait`` returns; RuntimeMaxSec= backs the job's own timeout
(the `job run` process kills the job's group first).
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence

from tvmaniac_refreshd.config.jobs import Job
from tvmaniac_refreshd.core.locations import APP, JOB_RETRY_PREFIX
from tvmaniac_refreshd.core.logs import get_logger
from tvmaniac_refreshd.daemon.hook_sandbox import current_unit

DAEMON_UNIT = f"{APP}.service"
# Getting the token and starting the unit, beyond the job's own timeout (timer mode's slack).
START_SLACK = 120
# The transient units running now, for a daemon that stops.
_running: set[str] = set()
_running_lock = threading.Lock()


def in_daemon_unit(environ: Mapping[str, str]) -> bool:
    """Whether this process is the daemon in its systemd unit, with systemd-run at hand."""
    return current_unit(environ) == DAEMON_UNIT and shutil.which("systemd-run") is not None


def self_command(config_source: str) -> list[str]:
    """The command of this installation for ``config_source``, as the units have it."""
    return [sys.executable, "-m", "tvmaniac_refreshd", "--config", config_source]


def unit_argv(job: Job, name: str, command: Sequence[str], environ: Mapping[str, str]) -> list[str]:
    """Return the systemd-run command that runs `job run` of ``job`` as the unit ``name``.

    The properties are the timer mode's job service's (service/job_units.py). ``--setenv=NAME``
    without a value passes our value: the bus address, never a secret.
    """
    passed = [
        f"--setenv={variable}" for variable in ("DBUS_SESSION_BUS_ADDRESS",) if variable in environ
    ]
    return [
        "systemd-run",
        "--user",
        "--quiet",
        "--collect",
        "--wait",
        "--service-type=exec",
        f"--unit={name}",
        f"--description=Run the {APP} job {job.name} with a fresh token (daemon mode)",
        f"--property=RuntimeMaxSec={job.timeout + START_SLACK}",
        f"--property=SyslogIdentifier={APP}",
        "--property=NoNewPrivileges=yes",
        "--property=UMask=0077",
        "--property=LimitCORE=0",  # a core dump would hold the token
        "--setenv=PYTHONUNBUFFERED=1",
        *passed,
        "--",
        *command,
        "job",
        "run",
        job.name,
    ]


def run_in_unit(job: Job, command: Sequence[str], environ: Mapping[str, str]) -> int:
    """Run ``job`` by `job run` in a transient unit; return its exit status (systemd-run's own
    failure is an exit status too, logged here with its words)."""
    name = f"{APP}-job-{job.name}-{secrets.token_hex(4)}.service"
    log = get_logger(job=job.name)
    log.info("job.unit_started", unit=name)
    with _running_lock:
        _running.add(name)
    try:
        done = subprocess.run(  # an argv of ours, no shell
            unit_argv(job, name, command, environ),
            env=dict(environ),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            check=False,
        )
    except OSError as exc:
        log.error("job.unit_not_started", unit=name, error=exc.strerror)  # noqa: TRY400
        return 1
    finally:
        with _running_lock:
            _running.discard(name)
    if done.stderr.strip():
        log.warning("job.unit_said", unit=name, said=done.stderr.strip()[-500:])
    return done.returncode


def retry_timer(name: str) -> str:
    """The transient timer that retries job ``name`` in timer mode (``arm_retry``)."""
    return f"{JOB_RETRY_PREFIX}{name}.timer"


def in_job_unit(environ: Mapping[str, str], name: str) -> bool:
    """Whether this process is timer mode's oneshot of job ``name`` (service/job_units.py)."""
    return current_unit(environ) == f"{APP}-job-{name}.service"


def arm_retry(name: str, delay: float) -> bool:
    """Timer mode's backoff: start job ``name``'s oneshot again in ``delay`` seconds, by a
    transient timer of the user's manager; return whether it was armed.

    systemd refuses RestartForceExitStatus= on a oneshot, and Restart=on-failure would retry
    every error: so `job run` arms the retry itself, with the delay the daemon would use. The
    timer runs ``systemctl --user start --no-block`` of the installed oneshot: the retry is the
    same unit, with the same properties, as a regular firing. One per job: a new one replaces
    the last.
    """
    disarm_retry(name)
    unit = retry_timer(name).removesuffix(".timer")
    try:
        done = subprocess.run(
            [
                "systemd-run",
                "--user",
                "--quiet",
                "--collect",
                f"--unit={unit}",
                f"--on-active={max(1, round(delay))}s",
                "--timer-property=AccuracySec=1s",
                f"--description=Retry the {APP} job {name}",
                "--",
                "systemctl",
                "--user",
                "start",
                "--no-block",
                f"{APP}-job-{name}.service",
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        get_logger(job=name).warning("job.retry_not_armed", error=str(exc))
        return False
    if done.returncode != 0:
        get_logger(job=name).warning("job.retry_not_armed", error=done.stderr.strip()[-500:])
        return False
    get_logger(job=name).info("job.retry_armed", unit=retry_timer(name), retry_in_s=round(delay))
    return True


def disarm_retry(name: str) -> None:
    """Stop job ``name``'s retry timer, if one is armed (the job ran meanwhile)."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        subprocess.run(
            ["systemctl", "--user", "stop", retry_timer(name)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=30,
            check=False,
        )


def stop_running_units() -> None:
    """Stop every job unit still running (the daemon is stopping): as the in-process runner
    kills its job groups, so that no job outlives the daemon that planned it."""
    with _running_lock:
        names = list(_running)
    for name in names:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(
                ["systemctl", "--user", "stop", "--no-block", name],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=10,
                check=False,
            )
