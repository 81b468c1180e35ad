"""A throwaway booted systemd for tests: an nspawn container over an overlay of the host root.

``Container`` boots ``systemd`` as PID 1 of a ``systemd-nspawn`` container whose root is an
overlay of the host's ``/`` (so every host package, including systemd-container,
gnome-keyring and the project's interpreter, is there) and runs commands inside it by
``nsenter``-ing into that PID 1. Users created with ``create_user`` get a lingering systemd
*user* manager with a session bus, which is exactly the environment the daemon's user
service runs in. Recipe and pitfalls: /work/shared/recipes/real-components.md, section 1.

Nothing can leak onto the host, even if the test process is killed:

* the overlay and the tmpfs holding its writable layer are mounted in a private mount
  namespace (``unshare --mount``) that only ``systemd-nspawn`` lives in, so the host never
  sees them and they vanish with the last container process;
* ``systemd-nspawn`` gets ``PDEATHSIG=SIGTERM``: if the test process dies, nspawn halts the
  container (its documented reaction to SIGTERM);
* ``stop()`` also runs from a ``weakref.finalize`` (so at interpreter exit too), and escalates
  to SIGKILL of the container's PID 1, which kills its whole PID namespace.

Journal: the container runs its own journald (``--link-journal=no``, volatile storage in
the container's ``/run``). Query it from inside, as root, with
``journalctl -o json _UID=<uid> MATCH...`` (``Container.journal``). ``journalctl --user -M
user@`` does not work here (no machined), and as root ``--user-unit=`` silently adds
``_UID=0`` and finds nothing; ``journalctl --user`` run *as the user* works too.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self, TypeVar

T = TypeVar("T")

REPO_ROOT = Path(__file__).resolve().parents[2]
# A clean, predictable environment inside: nothing of the test process's environment
# (virtualenv, DBUS_SESSION_BUS_ADDRESS, pyenv shims) may leak into the container.
CONTAINER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BASE_ENV = {"PATH": CONTAINER_PATH, "TERM": "dumb", "LANG": "C.UTF-8"}
REQUIRED_TOOLS = ("systemd-nspawn", "nsenter", "unshare", "setpriv", "mount")
# Enabled on the host image, useless here, and it slows every boot down.
MASKED_UNITS = ("postgresql.service",)
# Boot and user-manager start take about 1 s each on the reference machine; the bounds only
# stop a broken container from hanging the suite.
BOOT_TIMEOUT = 60.0
USER_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0
KILL_TIMEOUT = 10.0

# Runs in the private mount namespace, then becomes systemd-nspawn (exec keeps the PID and
# the parent-death signal). The writable layer lives on a tmpfs so that even a SIGKILLed
# run leaves nothing on disk.
_START_SCRIPT = """\
set -eu
state=$1; shift
mount -t tmpfs -o mode=0700 refreshd-container "$state"
mkdir "$state/upper" "$state/work" "$state/root"
layers="lowerdir=$LOWER,upperdir=$state/upper,workdir=$state/work"
mount -t overlay overlay -o "$layers" "$state/root"
# A fresh machine-id: with an empty /etc/machine-id, systemd would copy the host's id from
# /var/lib/dbus/machine-id, and the container's journal would then claim to be the host's.
rm -f "$state/root/etc/machine-id" "$state/root/var/lib/dbus/machine-id"
: > "$state/root/etc/machine-id"
for unit in $MASKED_UNITS; do ln -sf /dev/null "$state/root/etc/systemd/system/$unit"; done
# A reboot inside makes nspawn exit with 133 (systemd-nspawn@.service restarts on it): boot
# again from the same overlay, as a machine boots again from the same disk. SIGTERM (stop(),
# or the parent-death signal) is handed to nspawn, which answers it with a clean halt.
set +e
child=
trap '[ -n "$child" ] && kill -TERM "$child" 2>/dev/null' TERM
while :; do
    systemd-nspawn -D "$state/root" "$@" &
    child=$!
    wait "$child"; rc=$?
    # A trapped signal interrupts wait; wait again for nspawn's own exit status.
    while kill -0 "$child" 2>/dev/null; do wait "$child"; rc=$?; done
    [ "$rc" -eq 133 ] || exit "$rc"
done
"""


class ContainerError(RuntimeError):
    """The container could not be booted, or a user manager did not come up."""


class CommandError(subprocess.CalledProcessError):
    """A command run inside the container exited non-zero; shows its output."""

    def __str__(self) -> str:
        return f"{super().__str__()}\nstdout: {self.stdout!r}\nstderr: {self.stderr!r}"


def available() -> str | None:
    """Return why containers cannot run on this machine, or None when they can."""
    if not sys.platform.startswith("linux"):
        return "systemd-nspawn containers need Linux"
    if os.geteuid() != 0:
        return "booting an nspawn container needs root"
    missing = [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
    if missing:
        return f"missing {', '.join(missing)} (apt-get install systemd-container util-linux)"
    return None


def poll(fn: Callable[[], T], *, timeout: float, what: str, interval: float = 0.05) -> T:
    """Call ``fn`` until it returns a truthy value and return it; fail after ``timeout`` s.

    For waiting on another process to reach a state, never for letting time pass.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout:g}s waiting for {what}; last: {value!r}"
            )
        time.sleep(interval)


def _hidden_from_overlay(path: Path) -> bool:
    # An overlay of "/" shows only the root filesystem: other mounts are not part of it,
    # and nspawn puts a fresh tmpfs on /tmp.
    if path == Path("/tmp") or Path("/tmp") in path.parents:  # noqa: S108 - nspawn's fixed path
        return True
    try:
        return path.stat().st_dev != Path("/").stat().st_dev
    except FileNotFoundError:
        return False


def _default_binds() -> list[Path]:
    """The repository, plus the running interpreter's environment when it lives elsewhere."""
    binds = [REPO_ROOT, Path(sys.prefix).resolve()]
    base = Path(sys.base_prefix).resolve()
    if _hidden_from_overlay(base):
        binds.append(base)
    return binds


def _dedupe(paths: Iterable[Path]) -> list[Path]:
    # A bind inside another bind would be shadowed or would duplicate a mount.
    kept: list[Path] = []
    for path in sorted({p.resolve() for p in paths}, key=lambda p: len(p.parts)):
        if not any(k == path or k in path.parents for k in kept):
            kept.append(path)
    return kept


def _child_named(ppid: int, comm: str) -> int | None:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The comm field is parenthesised and may itself contain spaces or parentheses.
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        if name == comm and int(fields[1]) == ppid:
            return int(entry.name)
    return None


@dataclass
class _Resources:
    """Everything ``stop`` must release; kept apart from ``Container`` for the finalizer."""

    root: Path
    proc: subprocess.Popen[bytes] | None = None
    leader: int | None = None
    log: IO[bytes] | None = None
    released: bool = field(default=False)


def _release(res: _Resources) -> None:
    """Halt the container, escalate to SIGKILL if needed, and remove the temp dir."""
    if res.released:
        return
    res.released = True
    proc = res.proc
    if proc is not None and proc.poll() is None:
        # The start script hands SIGTERM to nspawn, which asks the container's systemd for a
        # clean halt.
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            # Killing PID 1 of a PID namespace kills every process in it.
            for pid in (res.leader, proc.pid):
                if pid is not None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
            proc.wait(timeout=KILL_TIMEOUT)
    if res.log is not None:
        res.log.close()
    shutil.rmtree(res.root, ignore_errors=True)


class Container:
    """A booted, throwaway systemd container; use as a context manager."""

    def __init__(
        self,
        *,
        binds: Iterable[Path | str] = (),
        name: str | None = None,
        lower: Path = Path("/"),
    ) -> None:
        """Prepare a container that bind-mounts ``binds`` read-only (at the same paths), over
        an overlay of ``lower`` (the host's root, or another distribution's tree)."""
        self.name = name or f"refreshd-{secrets.token_hex(4)}"
        self.binds = _dedupe([*_default_binds(), *(Path(b) for b in binds)])
        self.lower = lower
        # The interpreter running the tests: its path is valid inside thanks to the binds.
        self.python = sys.executable
        self.repo = REPO_ROOT
        self._uids: dict[str, int] = {}
        self._res: _Resources | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None

    def __repr__(self) -> str:
        leader = self._res.leader if self._res else None
        return f"<Container {self.name} leader={leader}>"

    @property
    def leader(self) -> int:
        """The host PID of the container's PID 1 (its systemd)."""
        if self._res is None or self._res.leader is None or self._res.released:
            raise ContainerError(f"container {self.name} is not running")
        return self._res.leader

    def console(self) -> str:
        """Return the container's console output so far (nspawn and systemd messages)."""
        if self._res is None:
            return ""
        try:
            return (self._res.root / "console.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # --- lifecycle -------------------------------------------------------------------

    def start(self) -> Self:
        """Boot the container and wait until its systemd reports running or degraded."""
        if self._res is not None:
            raise ContainerError(f"container {self.name} was already started")
        res = self._res = _Resources(root=Path(tempfile.mkdtemp(prefix=f"{self.name}-")))
        self._finalizer = weakref.finalize(self, _release, res)
        try:
            self._boot(res)
        except BaseException:
            self.stop()
            raise
        return self

    def _boot(self, res: _Resources) -> None:
        state = res.root / "state"
        state.mkdir()
        res.log = (res.root / "console.log").open("wb")
        nspawn_args = [
            # No systemd on the host: nothing to register with, no scope to create.
            "--register=no",
            "--keep-unit",
            "--link-journal=no",
            f"--machine={self.name}",
            "--console=pipe",
            *(f"--bind-ro={path}" for path in self.binds),
            "-b",
        ]
        res.proc = subprocess.Popen(
            [
                "setpriv",
                "--pdeathsig",
                "TERM",
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                _START_SCRIPT,
                "sh",
                str(state),
                *nspawn_args,
            ],
            stdin=subprocess.DEVNULL,
            stdout=res.log,
            stderr=subprocess.STDOUT,
            env={**BASE_ENV, "MASKED_UNITS": " ".join(MASKED_UNITS), "LOWER": str(self.lower)},
            # Keeps a Ctrl-C at the terminal from reaching nspawn: stop() halts it instead.
            start_new_session=True,
        )
        self._wait_for_boot(res, previous=None)

    def _wait_for_boot(self, res: _Resources, *, previous: int | None) -> None:
        """Find the container's PID 1 (not ``previous``) and wait until it has booted."""
        assert res.proc is not None
        shell = res.proc.pid

        def leader() -> int | None:
            self._check_alive()
            nspawn = _child_named(shell, "systemd-nspawn")
            pid = _child_named(nspawn, "systemd") if nspawn is not None else None
            return pid if pid != previous else None

        res.leader = None
        res.leader = poll(leader, timeout=BOOT_TIMEOUT, what=f"PID 1 of {self.name}")

        def booted() -> bool:
            self._check_alive()
            state = self.run(["systemctl", "is-system-running"], timeout=10).stdout.strip()
            return state in ("running", "degraded")

        poll(booted, timeout=BOOT_TIMEOUT, what=f"{self.name} to finish booting", interval=0.1)

    def reboot(self) -> None:
        """Reboot the container: every process stops, /run and /tmp start empty, the disk (the
        overlay) stays; lingering users' managers start again with nobody logged in."""
        res = self._res
        if res is None or res.released:
            raise ContainerError(f"container {self.name} is not running")
        previous = self.leader
        # The command may die with the container before it can answer.
        self.run(["systemctl", "reboot"], timeout=30)
        self._wait_for_boot(res, previous=previous)

    def wait_for_user_manager(self, user: str) -> None:
        """Wait until ``user``'s lingering manager and session bus are up (after a boot)."""
        uid = self.uid(user)
        bus = f"/run/user/{uid}/bus"
        poll(
            lambda: self.run(["test", "-S", bus]).returncode == 0,
            timeout=USER_TIMEOUT,
            what=f"{bus} in {self.name}",
        )
        poll(
            lambda: (
                self.user_systemctl(user, "is-system-running").stdout.strip()
                in ("running", "degraded")
            ),
            timeout=USER_TIMEOUT,
            what=f"the user manager of {user} in {self.name}",
        )

    def _check_alive(self) -> None:
        res = self._res
        if res is None or res.proc is None or res.proc.poll() is not None:
            raise ContainerError(f"container {self.name} exited; console:\n{self.console()}")

    def stop(self) -> None:
        """Halt the container and remove its files; safe to call more than once."""
        if self._finalizer is not None:
            self._finalizer()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- running things --------------------------------------------------------------

    def run(
        self,
        argv: Sequence[str],
        *,
        user: str | None = None,
        env: Mapping[str, str] | None = None,
        check: bool = False,
        timeout: float = 60,
        input: str | None = None,
        cwd: str | Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside the container, as root or as ``user`` with its session bus.

        The environment is only PATH/TERM/LANG (plus, for ``user``, XDG_RUNTIME_DIR and
        DBUS_SESSION_BUS_ADDRESS so ``systemctl --user`` and the keyring work) and ``env``.
        """
        extra = dict(env or {})
        chdir = ["-C", str(cwd)] if cwd is not None else []
        cmd = ["nsenter", "-t", str(self.leader), "-a", "env", "-i"]
        cmd += [f"{k}={v}" for k, v in BASE_ENV.items()]
        if user is None:
            cmd += ["env", *chdir, *(f"{k}={v}" for k, v in extra.items())]
        else:
            uid = self.uid(user)
            session = {
                "XDG_RUNTIME_DIR": f"/run/user/{uid}",
                "DBUS_SESSION_BUS_ADDRESS": f"unix:path=/run/user/{uid}/bus",
            }
            # runuser, like su, resets HOME/USER/LOGNAME/SHELL and keeps the rest.
            cmd += ["runuser", "-u", user, "--", "env", *chdir]
            cmd += [f"{k}={v}" for k, v in {**session, **extra}.items()]
        cmd += argv
        result = subprocess.run(
            cmd,
            input=input,
            stdin=subprocess.DEVNULL if input is None else None,
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise CommandError(result.returncode, list(argv), result.stdout, result.stderr)
        return result

    def uid(self, user: str) -> int:
        """Return the uid of ``user`` inside the container."""
        if user not in self._uids:
            self._uids[user] = int(self.run(["id", "-u", user], check=True).stdout)
        return self._uids[user]

    def create_user(self, name: str = "tok") -> int:
        """Add ``name`` with a home and a lingering user manager; return its uid when ready."""
        self.run(["useradd", "-m", "-s", "/bin/bash", name], check=True)
        uid = self.uid(name)
        # Linger starts user@UID.service now, with no login session needed.
        self.run(["loginctl", "enable-linger", name], check=True)
        self.wait_for_user_manager(name)
        return uid

    def user_systemctl(
        self, user: str, *args: str, check: bool = False, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run ``systemctl --user ARGS`` as ``user``."""
        return self.run(["systemctl", "--user", *args], user=user, check=check, timeout=timeout)

    def journal(self, user: str | None, *match: str, output: str = "json") -> list[dict[str, Any]]:
        """Return the container's journal entries from ``user``'s processes matching ``match``.

        Runs ``journalctl -o json _UID=<uid> MATCH...`` as root. ``_UID`` covers the user's
        units and its user manager's own lines about them (``USER_UNIT=``). A ``+`` in
        ``match`` ORs only with what precedes it, so repeat ``_UID=`` after it if needed.
        """
        if output != "json":
            raise ValueError(f"journal() parses only -o json, not {output!r}; use journal_text()")
        selector = [f"_UID={self.uid(user)}"] if user is not None else []
        text = self.run(
            ["journalctl", "--no-pager", "-q", "-o", output, *selector, *match], check=True
        ).stdout
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def journal_text(self, user: str | None, *match: str, output: str = "cat") -> str:
        """Return the same entries as ``journal`` in a human-readable journalctl format."""
        selector = [f"_UID={self.uid(user)}"] if user is not None else []
        return self.run(
            ["journalctl", "--no-pager", "-q", "-o", output, *selector, *match], check=True
        ).stdout

    def init_keyring(self, user: str, password: str) -> str:
        """Create (or unlock) ``user``'s login keyring headlessly; return kr_ctl's status line.

        gnome-keyring is D-Bus-activated on the user's session bus by the first call.
        """
        result = self.run(
            [self.python, "-m", "tests.support.kr_ctl", "init"],
            user=user,
            env={"PYTHONPATH": str(self.repo)},
            cwd=self.repo,
            input=password,
            check=True,
        )
        return result.stdout.strip()
