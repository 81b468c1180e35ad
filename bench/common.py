"""What every benchmark shares: a rig (private keyring, emulator, config), timing and the machine.

The rig is the one the integration tests use: a private gnome-keyring on its own D-Bus bus and the
Trakt emulator in this process, so nothing touches the developer's keyring or Trakt account.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from tests.support.harness import CLIENT_ID, CLIENT_SECRET
from tests.support.keyring_session import KeyringSession
from trakt_emulator import Emulator
from tvmaniac_refreshd.config.settings import load_config
from tvmaniac_refreshd.core.tokens import TokenDocument, TokenSet, encode_document

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[1]
SERVICE = "tvmaniac-refreshd"
WEEK = 604_800
# Six days into a seven-day token: 25 % of its lifetime is left no longer, so it is due now.
DUE_AGE = 6 * 86_400


def machine() -> dict[str, object]:
    """Describe the machine the numbers come from: a shared 2-core VM is not a laptop."""
    cpu = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = "unknown"
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        memory = f"{int(meminfo.read_text().split()[1]) // 1024} MiB"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory": memory,
        "kernel": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
    }


def retried(measure: Callable[..., T], *args: object, attempts: int = 2) -> T:
    """Run one measurement, again on a fresh rig if the private keyring died under it.

    gnome-keyring 42.1 sometimes drops off the bus under a burst of writes on this loaded VM
    (the seeding of many items); that says nothing about the thing measured, so the part is
    run again from scratch, and the report says how often (``BENCH_RETRIES`` on stderr).
    """
    for attempt in range(1, attempts + 1):
        try:
            return measure(*args)
        except (subprocess.CalledProcessError, RuntimeError) as exc:
            if attempt == attempts:
                raise
            print(f"BENCH_RETRIES: {measure.__module__} failed ({exc}); again", file=sys.stderr)
    raise AssertionError("unreachable")


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def timed(argv: Sequence[str], env: dict[str, str], *, stdin: str = "") -> tuple[float, str]:
    """Run ``argv`` to completion; return its wall time in seconds and its stdout."""
    began = time.perf_counter()
    result = subprocess.run(
        list(argv), input=stdin, capture_output=True, text=True, env=env, check=False, timeout=120
    )
    elapsed = time.perf_counter() - began
    if result.returncode != 0:
        raise RuntimeError(f"{argv[:4]} failed ({result.returncode}): {result.stderr[-2000:]}")
    return elapsed, result.stdout


def repeat(runs: int, once: Callable[[], float], *, warmup: int = 1) -> list[float]:
    """Return ``runs`` timings of ``once``, after ``warmup`` untimed ones (page cache, pyc)."""
    for _ in range(warmup):
        once()
    return [once() for _ in range(runs)]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def switches(pid: int) -> int:
    """Voluntary context switches over all threads: how often the process went to sleep."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        for line in (task / "status").read_text().splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                total += int(line.split()[1])
    return total


def token_document(name: str, grant: dict[str, object], fingerprint: str, age: int) -> str:
    created = int(time.time()) - age
    return encode_document(
        TokenDocument(
            account=name,
            provider="trakt",
            tokens=TokenSet(
                str(grant["access_token"]),
                str(grant["refresh_token"]),
                created,
                WEEK,
                created + WEEK,
            ),
            fingerprint=fingerprint,
            obtained_at=created,
        )
    )


# Written as python-keyring writes items (its attributes differ from secret-tool's).
_WRITER = (
    "import json, sys\nfrom keyring.backends import SecretService\n"
    "kr = SecretService.Keyring()\n"
    "for name, text in json.load(sys.stdin).items():\n"
    "    kr.set_password('tvmaniac-refreshd', name, text)\n"
)


@dataclass
class Rig:
    """A running private keyring and emulator, a config with ``count`` accounts, and its env."""

    keyring: KeyringSession
    emulator: Emulator
    root: Path
    env: dict[str, str]
    config: Path
    names: list[str]

    def seed(self, *, age: int = 0, names: Sequence[str] | None = None) -> None:
        """Give each account a fresh grant at the emulator and the same pair in the keyring."""
        accounts = load_config(self.config).accounts
        items = {
            name: token_document(
                name,
                self.emulator.seed_grant(name, created_at=int(time.time()) - age, expires_in=WEEK),
                accounts[name].fingerprint(),
                age,
            )
            for name in (names if names is not None else self.names)
        }
        subprocess.run(
            [sys.executable, "-c", _WRITER],
            input=json.dumps(items),
            text=True,
            env=self.env,
            check=True,
            timeout=600,
        )

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "tvmaniac_refreshd", *args]

    def file_store_env(self, *, user: str = "filestore") -> dict[str, str]:
        """Return the environment of a second installation, the same accounts with
        ``[store] backend = "file"`` and its own state directory, each account seeded in its
        file store with a fresh grant of its own (``user`` at the emulator)."""
        from tvmaniac_refreshd.core.tokens import decode_document  # noqa: PLC0415
        from tvmaniac_refreshd.storage import layout  # noqa: PLC0415
        from tvmaniac_refreshd.storage.file_store import FileStore  # noqa: PLC0415

        config = self.root / "config-file-store.toml"
        config.write_text('[store]\nbackend = "file"\n' + self.config.read_text())
        config.chmod(0o600)
        home = self.root / "home-file-store"
        home.mkdir(mode=0o700, exist_ok=True)
        accounts = load_config(config).accounts
        store = FileStore(Path(layout.token_directory(layout.state_under(str(home)))))
        for name in self.names:
            grant = self.emulator.seed_grant(f"{user}-{name}", expires_in=WEEK)
            text = token_document(name, grant, accounts[name].fingerprint(), 0)
            store.save(decode_document(text, name))
        # The state directory follows HOME (storage/layout.py): a second installation, a
        # second home.
        return {**self.env, "HOME": str(home), "TVMANIAC_REFRESHD_CONFIG": str(config)}

    def daemon_env(self) -> dict[str, str]:
        """Return the environment of a second installation with the same config (the keyring,
        the same items) and its own home, for a daemon to run in: the daemon answers `token`
        in its own state directory only (storage/token_socket.py), so the first installation's
        `token` stays unanswered."""
        home = self.root / "home-daemon"
        home.mkdir(mode=0o700, exist_ok=True)
        return {**self.env, "HOME": str(home)}


def write_config(root: Path, emulator: Emulator, count: int, extra: str = "") -> Path:
    config = root / "config.toml"
    names = ["default"] if count == 1 else [f"a{i}" for i in range(count)]
    tables = "".join(
        f'[accounts.{name}]\nprovider = "trakt"\nclient_id = "{CLIENT_ID}"\n'
        f'client_secret = "{CLIENT_SECRET}"\nauth_url = "{emulator.url}"\n'
        f'api_url = "{emulator.url}"\n'
        for name in names
    )
    config.write_text("[alerts]\ndesktop = false\n" + extra + tables)
    config.chmod(0o600)
    return config


@contextmanager
def rig(count: int = 1, extra_config: str = "") -> Iterator[Rig]:
    """Start a keyring and an emulator, write a config with ``count`` accounts; not seeded."""
    with (
        KeyringSession() as keyring,
        Emulator(client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as emulator,
    ):
        root = keyring.home / "bench"
        root.mkdir(mode=0o700)
        config = write_config(root, emulator, count, extra_config)
        env = dict(keyring.env)
        env.update(
            {
                "PYTHONPATH": str(REPO),
                "HOME": str(root),  # the state directory follows it (storage/layout.py)
                "TVMANIAC_REFRESHD_CONFIG": str(config),
                "NO_COLOR": "1",
            }
        )
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        names = list(load_config(config).accounts)
        yield Rig(keyring, emulator, root, env, config, names)


GNU_TIME = "/usr/bin/time"


def peak_rss_kib(argv: Sequence[str], env: dict[str, str]) -> int:
    """Return the peak RSS of ``argv``, as GNU time reports it.

    Not from our own wait4: a child forked from this process starts with this process's
    high-water mark, which exec carries over, so every small command would look as big as us.
    """
    result = subprocess.run(
        [GNU_TIME, "-f", "%M", *argv], env=env, capture_output=True, text=True, check=True
    )
    return int(result.stderr.strip().splitlines()[-1])


def run_measured(argv: Sequence[str], env: dict[str, str]) -> tuple[float, int, str]:
    """Run ``argv``; return its wall time (s), a peak RSS (KiB) and its stdout.

    The peak RSS is wait4's and includes this process's (see ``peak_rss_kib``); use that.
    """
    began = time.perf_counter()
    process = subprocess.Popen(
        list(argv),
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = process.stdout.read(), process.stderr.read()  # type: ignore[union-attr]
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - began
    process.returncode = os.waitstatus_to_exitcode(status)
    process.stdout.close()  # type: ignore[union-attr]
    process.stderr.close()  # type: ignore[union-attr]
    if process.returncode != 0:
        raise RuntimeError(f"{list(argv)[:4]} failed ({process.returncode}): {err[-2000:]!r}")
    return elapsed, usage.ru_maxrss, out.decode()


def start_daemon(
    env: dict[str, str], root: Path, *, timeout: float, stderr: int | None = None
) -> tuple[subprocess.Popen[str], socket.socket, float]:
    """Start `run` with a notify socket of ours; return it, the socket, and seconds to READY."""
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(root / "notify.sock"))
    notify.settimeout(timeout)
    started = time.monotonic()
    daemon = subprocess.Popen(
        [sys.executable, "-m", "tvmaniac_refreshd", "run"],
        env={**env, "NOTIFY_SOCKET": str(root / "notify.sock")},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL if stderr is None else stderr,
        text=True,
    )
    while not notify.recv(4096).startswith(b"READY=1"):
        pass
    return daemon, notify, time.monotonic() - started
