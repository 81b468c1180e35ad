"""Timer mode's units for the jobs: per [jobs.NAME] one oneshot service running
`tvmaniac-refreshd job run NAME` and one timer; `service install` writes them, removes the
ones of jobs no longer configured, and `service uninstall` removes them all.

The service is not sandboxed like ours: it runs the user's own command, which must reach the
user's files (a cache under ~/.cache) as it would from cron. A run that exits 75 (try again)
arms a transient retry timer itself (daemon/job_unit.py ``arm_retry``): systemd refuses
RestartForceExitStatus= on a oneshot, and Restart=on-failure would retry every error.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from tvmaniac_refreshd.core.locations import APP, JOB_RETRY_PREFIX
from tvmaniac_refreshd.service.base import write_atomically

PREFIX = f"{APP}-job-"
# A oneshot's start may take the job's timeout, plus getting the token and the unit's start.
START_SLACK = 120


@dataclass(frozen=True)
class JobTimer:
    """What a job's timer needs of its config (the service layer does not read the config)."""

    name: str
    every: int | None  # seconds between runs, or
    hour: int | None  # a daily time
    minute: int | None
    timeout: int

    @property
    def service(self) -> str:
        return f"{PREFIX}{self.name}.service"

    @property
    def timer(self) -> str:
        return f"{PREFIX}{self.name}.timer"


def render_service(job: JobTimer, exec_start: str) -> bytes:
    return (
        f"# {APP} job {job.name} (timer mode), written by `{APP} service install --mode timer`.\n"
        "[Unit]\n"
        f"Description=Run the {APP} job {job.name} with a fresh token\n"
        f"Documentation=man:{APP}(1)\n"
        "After=dbus.socket\n\n"
        "[Service]\n"
        "Type=oneshot\n"
        # As the refresh timer's oneshot: a user unit cannot wait for network-online.target.
        f"ExecStart={exec_start} job run --wait-for-network 2m {job.name}\n"
        f"TimeoutStartSec={job.timeout + START_SLACK}s\n"
        "Environment=PYTHONUNBUFFERED=1\n"
        "Environment=DBUS_SESSION_BUS_ADDRESS=unix:path=%t/bus\n"
        f"SyslogIdentifier={APP}\n"
        "NoNewPrivileges=yes\n"
        "UMask=0077\n"
        # A core dump would hold the token.
        "LimitCORE=0\n"
    ).encode()


def render_timer(job: JobTimer) -> bytes:
    if job.every is None:
        schedule = (
            f"OnCalendar=*-*-* {job.hour or 0:02d}:{job.minute or 0:02d}:00\nPersistent=true\n"
        )
        when = f"daily at {job.hour or 0:02d}:{job.minute or 0:02d}"
    else:
        # The first run a minute after the timer starts (at login or install), then each period.
        schedule = f"OnActiveSec=1min\nOnUnitActiveSec={job.every}s\n"
        when = f"every {job.every}s"
    return (
        "[Unit]\n"
        f"Description=Run the {APP} job {job.name} {when}\n"
        f"Documentation=man:{APP}(1)\n\n"
        "[Timer]\n"
        f"{schedule}"
        "AccuracySec=1min\n\n"
        "[Install]\n"
        "WantedBy=timers.target\n"
    ).encode()


class SystemdJobUnits:
    """The job units in the user's unit directory; ``systemctl`` runs `systemctl --user ...`."""

    def __init__(self, unit_dir: Path, systemctl: Callable[..., str]) -> None:
        self.unit_dir = unit_dir
        self._systemctl = systemctl

    def installed(self) -> list[str]:
        return sorted(path.name for path in self.unit_dir.glob(f"{PREFIX}*.timer"))

    def install(
        self, jobs: Sequence[JobTimer], exec_start: str, *, dry_run: bool, out: TextIO
    ) -> None:
        """Write each job's units, remove those of jobs gone, start the timers."""
        wanted = {job.timer for job in jobs}
        stale = [timer for timer in self.installed() if timer not in wanted]
        if dry_run:
            for job in jobs:
                out.write(f"would write {self.unit_dir / job.service}\n")
                out.write(f"would write {self.unit_dir / job.timer}\n")
            for timer in stale:
                out.write(f"would remove {self.unit_dir / timer} and its service\n")
            return
        self._remove(stale)
        for job in jobs:
            write_atomically(self.unit_dir / job.service, render_service(job, exec_start))
            write_atomically(self.unit_dir / job.timer, render_timer(job))
        self._systemctl("daemon-reload")
        if jobs:
            self._systemctl("enable", "--now", *(job.timer for job in jobs))
            names = ", ".join(job.name for job in jobs)
            out.write(f"Installed a timer for each job ({names}): {PREFIX}NAME.timer\n")

    def uninstall(self, out: TextIO) -> None:
        present = self.installed()
        self._remove(present)
        if present:
            self._systemctl("daemon-reload")
            out.write(f"Removed the jobs' units: {', '.join(present)} and their services\n")

    def _remove(self, timers: Sequence[str]) -> None:
        if not timers:
            return
        services = [timer.removesuffix(".timer") + ".service" for timer in timers]
        # A retry armed by `job run` (a transient timer) must not start a removed service.
        retries = [
            JOB_RETRY_PREFIX + timer.removeprefix(PREFIX).removesuffix(".timer") + ".timer"
            for timer in timers
        ]
        self._systemctl("stop", *retries, check=False)
        self._systemctl("disable", "--now", *timers, *services, check=False)
        for unit in (*timers, *services):
            (self.unit_dir / unit).unlink(missing_ok=True)
            self._systemctl("reset-failed", unit, check=False)
