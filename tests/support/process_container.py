"""A throwaway *process* container: one program as PID 1 (no systemd inside), as Docker or
Podman would run an image's entry point, with a writable volume bound in.

Same overlay of the host root and the same cleanup guarantees as ``container.Container`` (the
start script, the private mount namespace, the parent-death signal); ``systemd-nspawn`` runs
without ``--boot`` and hands SIGTERM to PID 1 (``--kill-signal``), which is what ``docker stop``
does.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from tests.support.container import (
    _START_SCRIPT,
    BASE_ENV,
    MASKED_UNITS,
    STOP_TIMEOUT,
    _dedupe,
    _default_binds,
    poll,
)


def _children(ppid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat[stat.rindex(")") + 2 :].split()[1]) == ppid:
            found.append(int(entry.name))
    return found


class ProcessContainer:
    """Runs ``argv`` as PID 1 of a fresh container; use as a context manager."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        volumes: Mapping[Path, str],
        env: Mapping[str, str],
    ) -> None:
        self.argv = list(argv)
        self.volumes = dict(volumes)
        self.env = {**BASE_ENV, **env}
        self.name = f"refreshd-proc-{secrets.token_hex(4)}"
        self._root = Path(tempfile.mkdtemp(prefix=f"{self.name}-"))
        self._proc: subprocess.Popen[bytes] | None = None
        self._out: IO[bytes] | None = None

    def __enter__(self) -> Self:
        state = self._root / "state"
        state.mkdir()
        self._out = (self._root / "output.log").open("wb")
        nspawn = [
            "--register=no",
            "--keep-unit",
            "--quiet",
            f"--machine={self.name}",
            "--console=pipe",
            "--kill-signal=SIGTERM",
            *(f"--bind-ro={path}" for path in _dedupe(_default_binds())),
            *(f"--bind={host}:{inside}" for host, inside in self.volumes.items()),
            *(f"--setenv={key}={value}" for key, value in self.env.items()),
            "--",
            *self.argv,
        ]
        confine = ["setpriv", "--pdeathsig", "TERM", "unshare", "--mount", "--propagation"]
        self._proc = subprocess.Popen(
            [*confine, "private", "sh", "-c", _START_SCRIPT, "sh", str(state), *nspawn],
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            env={**BASE_ENV, "MASKED_UNITS": " ".join(MASKED_UNITS), "LOWER": "/"},
            start_new_session=True,
        )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        if self._out is not None:
            self._out.close()
        shutil.rmtree(self._root, ignore_errors=True)

    def output(self) -> str:
        """Return what PID 1 wrote to stdout and stderr so far (plus nspawn's own lines)."""
        return (self._root / "output.log").read_text(errors="replace")

    def wait(self, timeout: float) -> int:
        """Return the exit status of PID 1 (nspawn passes it on) once the container ends."""
        assert self._proc is not None
        return self._proc.wait(timeout=timeout)

    def pid1(self) -> int:
        """Return the host PID of the container's PID 1, once it runs."""
        assert self._proc is not None
        shell = self._proc.pid

        def find() -> int:
            for nspawn in _children(shell):
                for child in _children(nspawn):
                    return child
            return 0

        return poll(find, timeout=30, what=f"PID 1 of {self.name}")

    def exec(self, argv: Sequence[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside the running container, with its environment (`docker exec`)."""
        cmd = ["nsenter", "-t", str(self.pid1()), "-a", "env", "-i"]
        cmd += [f"{key}={value}" for key, value in self.env.items()]
        return subprocess.run(
            [*cmd, *argv], capture_output=True, text=True, timeout=timeout, check=False
        )

    def stop(self) -> int | None:
        """SIGTERM, as `docker stop` sends it; return PID 1's exit status."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=STOP_TIMEOUT)
        return proc.returncode
