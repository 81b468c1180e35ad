"""What each job's last run came to, one small JSON file per job: for `job list`, `status` and
the next run's decisions (a backoff, a run of failures to alert on) across processes.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from tvmaniac_refreshd.core.errors import UnsafeLocation
from tvmaniac_refreshd.storage.safe_files import (
    ensure_private_dir,
    read_private_text,
    write_atomically,
)


@dataclass(frozen=True)
class JobRecord:
    """A job's memory between runs; never a token, never its output."""

    last_run_at: int | None = None
    last_result: str | None = None  # JobResult's value (daemon/jobs.py)
    last_code: int | None = None
    next_run_at: int | None = None
    attempts: int = 0  # consecutive runs that asked to be retried or failed
    failing_since: int | None = None
    running_pid: int | None = None  # the process running it now (for "waiting for job NAME")


class JobStates:
    """The job records under ``directory`` (the state directory's ``jobs/``)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, name: str) -> Path:
        return self.directory / f"{name}.json"

    def load(self, name: str) -> JobRecord:
        """Return the record of job ``name``; an empty one if there is none or it is unreadable."""
        try:
            data: Any = json.loads(read_private_text(self._path(name)))
        except (OSError, UnsafeLocation, ValueError):
            return JobRecord()
        if not isinstance(data, dict):
            return JobRecord()
        known = {field.name for field in fields(JobRecord)}
        try:
            return JobRecord(**{key: value for key, value in data.items() if key in known})
        except TypeError:
            return JobRecord()

    def update(self, name: str, **changes: Any) -> JobRecord:  # noqa: ANN401
        """Write ``changes`` into the record of ``name`` atomically and return the new record.

        Raises:
            OSError, UnsafeLocation: the state directory cannot be written.
        """
        record = replace(self.load(name), **changes)
        ensure_private_dir(self.directory)
        write_atomically(self._path(name), json.dumps(asdict(record), sort_keys=True) + "\n")
        return record
