"""A real, private Secret Service for tests: gnome-keyring on its own D-Bus session bus.

``KeyringSession`` starts a ``dbus-daemon`` listening on a socket inside a temporary HOME,
then ``gnome-keyring-daemon`` on that bus, and creates and unlocks the login collection with
a known password through gnome-keyring's private D-Bus interface (see ``kr_ctl``). Nothing
touches the developer's own keyring or session bus: every path and address lives in the
temporary directory, and the caller's ``DBUS_SESSION_BUS_ADDRESS`` is never used.

Recipes and the exceptions python-keyring raises in each failure mode are documented in
/work/shared/recipes/real-components.md, section 3.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self
from xml.sax.saxutils import escape

import keyring
import keyring.backend
import keyring.core

from tests.support import kr_ctl

# Variables that would let a child reach the developer's desktop session, pop up a GUI
# prompt (which hangs a headless test), or override keyring's backend detection.
REMOVED_ENV_KEYS = (
    "DBUS_SESSION_BUS_ADDRESS",
    "DBUS_STARTER_ADDRESS",
    "DBUS_STARTER_BUS_TYPE",
    "DISPLAY",
    "WAYLAND_DISPLAY",
    "PYTHON_KEYRING_BACKEND",
    "GNOME_KEYRING_CONTROL",
)
REQUIRED_TOOLS = ("dbus-daemon", "gnome-keyring-daemon", "secret-tool")
# Default HOME for no_bus_env(): a path that cannot exist, so no config file, socket or
# keyring of the developer can be picked up by accident.
NO_BUS_HOME = Path("/nonexistent/tvmaniac-refreshd-test-home")

START_TIMEOUT = 15.0
STOP_TIMEOUT = 5.0
TOOL_TIMEOUT = 15.0

# No <servicedir>: nothing is D-Bus-activatable, so a missing Secret Service stays missing
# and gcr-prompter can never be started behind the test's back.
_BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <keep_umask/>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""

_PR_SET_PDEATHSIG = 1


def missing_tools() -> list[str]:
    """Return the names of the external programs the harness needs but cannot find."""
    return [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]


def _scrubbed_environ() -> dict[str, str]:
    env = dict(os.environ)
    for key in REMOVED_ENV_KEYS:
        env.pop(key, None)
    return env


def _home_env(home: Path) -> dict[str, str]:
    return {
        "HOME": str(home),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_RUNTIME_DIR": str(home / "run"),
    }


def no_bus_env(home: Path | None = None) -> dict[str, str]:
    """Return an environment with no D-Bus session bus at all.

    HOME and XDG_* point at ``home`` (default: a path that does not exist) so that
    neither keyring's config file nor libdbus's ``$XDG_RUNTIME_DIR/bus`` fallback can find
    the developer's real session.
    """
    env = _scrubbed_environ()
    env.update(_home_env(home if home is not None else NO_BUS_HOME))
    return env


def _die_with_parent() -> None:
    # If the test process is killed (SIGKILL, crash) the daemons must not outlive it.
    # Runs in the child between fork and exec; PDEATHSIG is tied to the forking thread.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def _preexec() -> Any:
    return _die_with_parent if sys.platform.startswith("linux") else None


def _terminate(procs: list[subprocess.Popen[bytes]]) -> None:
    """Stop each process group, politely first; processes are in reverse start order."""
    for proc in procs:
        if proc.poll() is not None:
            continue
        # Each daemon leads its own process group, so anything it spawned dies with it.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=STOP_TIMEOUT)


def _cleanup(procs: list[subprocess.Popen[bytes]], logs: list[IO[bytes]], root: Path) -> None:
    _terminate(list(reversed(procs)))
    for log in logs:
        log.close()
    shutil.rmtree(root, ignore_errors=True)


def processes_with_home(home: Path) -> list[int]:
    """Return the PIDs of live processes whose environment has ``HOME=home``.

    Every daemon the harness starts inherits that HOME, so this finds orphans even if
    they were re-parented or renamed themselves.
    """
    needle = b"HOME=" + os.fsencode(home) + b"\0"
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:  # gone already, or another user's process
            continue
        if (b"\0" + environ).find(b"\0" + needle) != -1:
            found.append(int(entry.name))
    return found


class KeyringSessionError(RuntimeError):
    """The private bus or gnome-keyring could not be started or controlled."""


class KeyringSession:
    """A private dbus-daemon plus gnome-keyring-daemon with a temporary HOME.

    Use as a context manager, or call ``start()`` and ``stop()``.

    ``start_locked=True`` leaves the login collection locked after creating it (keyring
    then raises ``KeyringLocked``); ``secret_service=False`` starts only the bus, so the
    Secret Service name has no owner and nothing can activate it.
    """

    def __init__(
        self,
        *,
        password: str | None = None,
        start_locked: bool = False,
        secret_service: bool = True,
    ) -> None:
        """Configure the session; nothing is started until ``start()``."""
        self.password = password if password is not None else secrets.token_urlsafe(24)
        self.start_locked = start_locked
        self.secret_service = secret_service
        self.root: Path | None = None
        self.address = ""
        self.env: dict[str, str] = {}
        self.startup_seconds = 0.0
        self._procs: list[subprocess.Popen[bytes]] = []
        self._logs: list[IO[bytes]] = []
        self._finalizer: weakref.finalize[Any, Any] | None = None

    def __repr__(self) -> str:
        """Describe the session without ever including the password."""
        return f"<KeyringSession root={self.root} address={self.address!r}>"

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def home(self) -> Path:
        """The temporary HOME; raises if the session is not running."""
        if self.root is None:
            raise KeyringSessionError("the keyring session is not running")
        return self.root

    @property
    def log_dir(self) -> Path:
        """Where the daemons' stdout/stderr go, to keep their noise out of test output."""
        return self.home / "harness-logs"

    @property
    def pids(self) -> list[int]:
        """PIDs of the daemons still running (dbus-daemon first)."""
        return [proc.pid for proc in self._procs if proc.poll() is None]

    # Which Secret Service this is, as secret_service_owner.py names it.
    program = "gnome-keyring"
    required_tools: tuple[str, ...] = REQUIRED_TOOLS

    def start(self) -> Self:
        """Start the bus and (unless disabled) gnome-keyring; return self."""
        if self.root is not None:
            raise KeyringSessionError("the keyring session is already running")
        missing = [tool for tool in self.required_tools if shutil.which(tool) is None]
        if missing:
            raise KeyringSessionError(f"missing programs: {', '.join(missing)}")
        began = time.monotonic()
        self.root = Path(tempfile.mkdtemp(prefix="tvm-keyring-"))
        self._finalizer = weakref.finalize(self, _cleanup, self._procs, self._logs, self.root)
        try:
            self._prepare_dirs()
            self.address = self._start_bus()
            self.env = _scrubbed_environ()
            self.env.update(_home_env(self.root))
            self.env["DBUS_SESSION_BUS_ADDRESS"] = self.address
            if self.secret_service:
                self._start_keyring()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        return self

    def stop(self) -> None:
        """Kill both daemons, delete the temporary HOME and check nothing is left running."""
        root = self.root
        if root is None:
            return
        if self._finalizer is not None:
            self._finalizer()
        leftovers = processes_with_home(root)
        for pid in leftovers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self._procs.clear()
        self._logs.clear()
        self.root = None
        self.address = ""
        self.env = {}
        if leftovers:
            raise KeyringSessionError(f"processes outlived the keyring session: {leftovers}")

    def __enter__(self) -> Self:
        """Start the session."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the session."""
        self.stop()

    def _prepare_dirs(self) -> None:
        home = self.home
        for key, value in _home_env(home).items():
            if key != "HOME":
                Path(value).mkdir(parents=True, exist_ok=True)
        # libdbus, gnome-keyring and systemd insist on a private runtime dir.
        (home / "run").chmod(0o700)
        self.log_dir.mkdir()

    def _spawn(
        self,
        argv: list[str],
        env: Mapping[str, str],
        log_name: str,
        stdin: int = subprocess.DEVNULL,
        **kwargs: Any,
    ) -> subprocess.Popen[bytes]:
        log = (self.log_dir / log_name).open("ab")
        self._logs.append(log)
        proc = subprocess.Popen(
            argv,
            env=dict(env),
            cwd=self.home,
            stdin=stdin,
            stdout=log,
            stderr=log,
            start_new_session=True,
            preexec_fn=_preexec(),  # noqa: PLW1509 - only calls prctl, no locks involved
            **kwargs,
        )
        self._procs.append(proc)
        return proc

    def _log_tail(self, log_name: str) -> str:
        try:
            text = (self.log_dir / log_name).read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-20:])

    def _start_bus(self) -> str:
        home = self.home
        config = self.log_dir / "bus.conf"
        config.write_text(_BUS_CONFIG.format(socket=escape(str(home / "run" / "bus"))))
        read_fd, write_fd = os.pipe()
        try:
            env = _scrubbed_environ()
            env.update(_home_env(home))
            proc = self._spawn(
                [
                    "dbus-daemon",
                    f"--config-file={config}",
                    "--nofork",
                    "--nopidfile",
                    f"--print-address={write_fd}",
                ],
                env,
                "dbus-daemon.log",
                pass_fds=(write_fd,),
            )
            os.close(write_fd)
            write_fd = -1
            # dbus-daemon prints its address only once the socket is listening, so the
            # line doubles as the readiness signal.
            address = self._read_line(read_fd, proc, "dbus-daemon.log")
        finally:
            os.close(read_fd)
            if write_fd != -1:
                os.close(write_fd)
        return address

    def _read_line(self, fd: int, proc: subprocess.Popen[bytes], log_name: str) -> str:
        deadline = time.monotonic() + START_TIMEOUT
        data = b""
        while b"\n" not in data:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise KeyringSessionError(
                    f"dbus-daemon did not report an address within {START_TIMEOUT}s:\n"
                    + self._log_tail(log_name)
                )
            ready, _, _ = select.select([fd], [], [], remaining)
            if ready:
                chunk = os.read(fd, 4096)
                if not chunk:
                    proc.wait(timeout=STOP_TIMEOUT)
                    raise KeyringSessionError(
                        f"dbus-daemon exited with {proc.returncode}:\n" + self._log_tail(log_name)
                    )
                data += chunk
        return data.split(b"\n", 1)[0].decode().strip()

    def _start_keyring(self) -> None:
        proc = self._spawn(
            [
                "gnome-keyring-daemon",
                "--foreground",
                "--components=secrets",
                f"--control-directory={self.home / 'run' / 'keyring'}",
            ],
            self.env,
            "gnome-keyring-daemon.log",
        )
        self._wait_for_secret_service(proc)
        with kr_ctl.connect(self.address) as conn:
            path = kr_ctl.init(conn, self.password)
            if self.start_locked:
                kr_ctl.lock(conn, path)

    def _wait_for_secret_service(
        self, proc: subprocess.Popen[bytes], log_name: str = "gnome-keyring-daemon.log"
    ) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        with kr_ctl.connect(self.address) as conn:
            while not kr_ctl.name_has_owner(conn):
                if proc.poll() is not None:
                    raise KeyringSessionError(
                        f"{log_name.removesuffix('.log')} exited with {proc.returncode}:\n"
                        + self._log_tail(log_name)
                    )
                if time.monotonic() >= deadline:
                    raise KeyringSessionError(
                        f"{kr_ctl.SECRETS_BUS_NAME} not owned within {START_TIMEOUT}s:\n"
                        + self._log_tail(log_name)
                    )
                time.sleep(0.02)

    # -- collection state --------------------------------------------------------------

    def _collection(self, conn: Any) -> str:
        path = kr_ctl.default_collection(conn)
        if path == kr_ctl.NO_OBJECT:
            raise KeyringSessionError("the Secret Service has no default collection")
        return path

    def lock(self) -> None:
        """Lock the login collection (keyring calls then raise KeyringLocked)."""
        with kr_ctl.connect(self.address) as conn:
            kr_ctl.lock(conn, self._collection(conn))

    def unlock(self) -> None:
        """Unlock the login collection with the session password, without any prompt."""
        with kr_ctl.connect(self.address) as conn:
            kr_ctl.unlock(conn, self._collection(conn), self.password)

    def is_locked(self) -> bool:
        """Return whether the login collection is locked."""
        with kr_ctl.connect(self.address) as conn:
            return kr_ctl.is_locked(conn, self._collection(conn))

    # -- items, through libsecret's own client ------------------------------------------

    def _secret_tool(
        self, *args: str, stdin: bytes | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            ["secret-tool", *args],
            env=self.env,
            input=stdin if stdin is not None else b"",
            capture_output=True,
            timeout=TOOL_TIMEOUT,
            check=False,
        )

    def lookup(self, service: str, username: str) -> str | None:
        """Return the secret for (service, username) as secret-tool sees it, or None."""
        result = self._secret_tool("lookup", "service", service, "username", username)
        if result.returncode != 0:
            # secret-tool exits 1 silently both when nothing matches and when the
            # collection is locked (its prompt fails); only the first means "no item".
            if result.stderr.strip():
                raise KeyringSessionError(
                    f"secret-tool lookup failed: {result.stderr.decode(errors='replace')}"
                )
            if self.is_locked():
                raise KeyringSessionError("secret-tool lookup failed: the collection is locked")
            return None
        return result.stdout.decode()

    def store(self, service: str, username: str, secret: str, *, label: str | None = None) -> None:
        """Store a secret for (service, username) with secret-tool, replacing any old one."""
        # Items written by python-keyring carry an extra "application" attribute, so
        # secret-tool's replace-on-store would not match them; clearing first keeps
        # exactly one item per (service, username).
        self._check_clear(self._secret_tool("clear", "service", service, "username", username))
        self._check(
            self._secret_tool(
                "store",
                f"--label={label or f'Password for {username!r} on {service!r}'}",
                "service",
                service,
                "username",
                username,
                stdin=secret.encode(),
            )
        )

    def clear(self, service: str) -> None:
        """Delete every item of ``service``, whatever its username."""
        self._check_clear(self._secret_tool("clear", "service", service))

    @classmethod
    def _check_clear(cls, result: subprocess.CompletedProcess[bytes]) -> None:
        # Like lookup, clear exits 1 without a message when nothing matched.
        if result.returncode == 1 and not result.stderr.strip():
            return
        cls._check(result)

    @staticmethod
    def _check(result: subprocess.CompletedProcess[bytes]) -> None:
        if result.returncode != 0:
            raise KeyringSessionError(
                f"{' '.join(map(str, result.args[:2]))} failed ({result.returncode}): "
                + result.stderr.decode(errors="replace")
            )


def _reset_keyring_detection() -> None:
    # keyring caches the list of viable backends for the life of the process; a backend
    # that was not viable under the old environment must be re-probed under the new one.
    # reset() raises KeyError when nothing has been cached yet.
    with contextlib.suppress(KeyError):
        keyring.backend.get_all_keyring.reset()


@contextlib.contextmanager
def applied(env: Mapping[str, str]) -> Iterator[None]:
    """Temporarily make ``env`` the whole of ``os.environ`` for in-process keyring use.

    keyring's backend is re-detected on entry and the previous backend restored on exit,
    so library code called inside the block talks to the private Secret Service.
    """
    saved_environ = dict(os.environ)
    # Read the private slot instead of get_keyring(): that would run detection against
    # the outer environment, which may be the developer's real session.
    saved_backend = getattr(keyring.core, "_keyring_backend", None)
    os.environ.clear()
    os.environ.update(env)
    try:
        _reset_keyring_detection()
        keyring.core.init_backend()
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved_environ)
        _reset_keyring_detection()
        if saved_backend is not None:
            keyring.core.set_keyring(saved_backend)
        else:
            keyring.core._keyring_backend = None  # lazily re-detected on next use
