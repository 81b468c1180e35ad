"""One run of a job's command: the token in its environment only, its output logged line by line
with ``JOB=``, its whole process group killed at the timeout.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO

from tvmaniac_refreshd.config.jobs import Job
from tvmaniac_refreshd.core.logs import get_logger

# After SIGTERM at the timeout, the group gets this long to exit before SIGKILL.
KILL_GRACE_SECONDS = 5.0
# A command that cannot be started gets the code a shell gives it (POSIX 2.8.2).
EXIT_NOT_FOUND = 127
EXIT_NOT_EXECUTABLE = 126
MAX_LINE = 4096
# The process groups of the jobs running in this process, for a daemon that stops.
_running: set[int] = set()
_running_lock = threading.Lock()


def kill_running_jobs() -> None:
    """SIGKILL every job group still running (the daemon is stopping)."""
    with _running_lock:
        groups = list(_running)
    for pgid in groups:
        _signal_group(pgid, signal.SIGKILL)


@dataclass(frozen=True)
class Finished:
    """How the command ended: its exit code, or that the timeout ended it."""

    code: int
    timed_out: bool = False


def run_command(job: Job, token: str, environ: Mapping[str, str]) -> Finished:
    """Run ``job.command`` with ``token`` in ``$job.env``; never raises for the command's sake."""
    log = get_logger(job=job.name)
    environment = {**environ, job.env: token}
    try:
        process = subprocess.Popen(  # argv as configured, no shell
            list(job.command),
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: the timeout ends everything it started
            close_fds=True,
        )
    except OSError as exc:
        log.error("job.not_started", command=job.command[0], error=exc.strerror)  # noqa: TRY400
        not_found = isinstance(exc, FileNotFoundError)
        return Finished(EXIT_NOT_FOUND if not_found else EXIT_NOT_EXECUTABLE)
    assert process.stdout is not None  # noqa: S101  # stdout=PIPE above
    reader = threading.Thread(
        target=_log_output, args=(process.stdout, job.name), name=f"job {job.name}", daemon=True
    )
    reader.start()
    timed_out = False
    with _running_lock:
        _running.add(process.pid)
    try:
        code = process.wait(timeout=job.timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        code = _kill_group(process)
    finally:
        # A child that forked and left: its group keeps nothing of ours alive after the run.
        _signal_group(process.pid, signal.SIGKILL)
        with _running_lock:
            _running.discard(process.pid)
    reader.join(KILL_GRACE_SECONDS)
    return Finished(code, timed_out)


def _kill_group(process: subprocess.Popen[bytes]) -> int:
    _signal_group(process.pid, signal.SIGTERM)
    try:
        return process.wait(timeout=KILL_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        _signal_group(process.pid, signal.SIGKILL)
        return process.wait()


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _log_output(stream: IO[bytes], name: str) -> None:
    """Log each line the command prints (the logger redacts any token it knows)."""
    log = get_logger(job=name)
    with stream:
        for raw in stream:
            line = raw[:MAX_LINE].decode(errors="replace").rstrip("\n")
            log.info("job.output", line=line)
