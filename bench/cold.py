"""`token` cold start on a fresh token, against two floors measured in the same run.

The floors: a bare ``python -c pass`` (what any Python command pays) and ``secret-tool lookup``
of the same keyring item (libsecret's C client: what reading the item costs at least). The
same `token` on the file store (``[store] backend = "file"``) is measured next to them, and the
same `token` with a daemon running for its installation, which answers it over its socket
(storage/token_socket.py; on a version without it, the daemon runs and `token` reads the
keyring). All are run interleaved, so that a noisy neighbour slows all of them alike.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from bench.common import SERVICE, Rig, median, peak_rss_kib, rig, run_measured, start_daemon

PYTHON_READ_ITEM = (
    "from tvmaniac_refreshd.storage.secret_service import read_item\n"
    f"print(read_item({SERVICE!r}, 'default'))\n"
)
# The floor of a `token` answered by a running daemon over a private Unix socket: the
# interpreter, a connect and one reply (the server checks the peer's uid, as the daemon does).
PYTHON_ASK_SOCKET = (
    "import socket, sys\n"
    "s = socket.socket(socket.AF_UNIX)\n"
    "s.connect(sys.argv[1])\n"
    "print(s.recv(4096).decode())\n"
)
TOKEN_GOAL_MS = 100.0
TOKEN_GOAL_RATIO = 2.5


def command(rig: Rig) -> list[str]:
    """The installed console script, as scripts call it; ``-m`` when there is none."""
    script = Path(sys.executable).with_name("tvmaniac-refreshd")
    return [str(script)] if script.exists() else rig.command()


def import_profile(rig: Rig, *args: str, top: int = 12) -> list[dict[str, object]]:
    """The slowest imports of one run of the command (``python -X importtime``), cumulative ms."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "tvmaniac_refreshd", *args],
        env=rig.env,
        capture_output=True,
        text=True,
        check=True,
    )
    rows = []
    for line in result.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = line.removeprefix("import time:").split("|")
        if not name.startswith(" " * 3):  # top-level imports only (one space of indent)
            rows.append({"module": name.strip(), "cumulative_ms": int(cumulative) / 1000})
    rows.sort(key=lambda row: -float(str(row["cumulative_ms"])))
    return rows[:top]


@contextlib.contextmanager
def socket_answering(path: Path, answer: bytes) -> Iterator[None]:
    """A Unix socket server at ``path`` that checks each peer's uid and sends ``answer``."""
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(8)

    def serve() -> None:
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return  # closed: the bench is done
            with connection:
                credentials = connection.getsockopt(
                    socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")
                )
                _, uid, _ = struct.unpack("3i", credentials)
                if uid == os.getuid():
                    connection.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown(socket.SHUT_RDWR)
        server.close()
        thread.join(5)


@contextlib.contextmanager
def daemon_running(env: dict[str, str], root: Path) -> Iterator[Callable[[], bool]]:
    """A daemon of the installation ``env``; yields whether it answers `token` on its socket."""
    from tvmaniac_refreshd.storage import layout  # noqa: PLC0415

    root.mkdir(mode=0o700)
    daemon, notify, _ = start_daemon(env, root, timeout=120)
    # getattr: the same bench measures a version without the socket, for before and after.
    path = Path(layout.state_directory(env)) / getattr(layout, "TOKEN_SOCKET", "_token.sock")
    try:
        yield path.exists
    finally:
        daemon.terminate()
        daemon.wait(60)
        notify.close()


def measure(runs: int) -> dict[str, object]:
    with rig() as r, contextlib.ExitStack() as stack:
        r.seed()
        ask = r.root / "ask.sock"
        stack.enter_context(socket_answering(ask, b"a-token-from-the-daemon"))
        daemon_env = r.daemon_env()
        answered = stack.enter_context(daemon_running(daemon_env, r.root / "daemon"))
        cases = {
            "token": [*command(r), "token"],
            "python_pass": [sys.executable, "-c", "pass"],
            "secret_tool_lookup": [
                "secret-tool",
                "lookup",
                "service",
                SERVICE,
                "username",
                "default",
            ],
            # The least a Python program does for the same answer: the same D-Bus read, alone.
            "python_read_item": [sys.executable, "-c", PYTHON_READ_ITEM],
            # The floor of a `token` answered by a running daemon.
            "python_ask_socket": [sys.executable, "-c", PYTHON_ASK_SOCKET, str(ask)],
            # The same `token`, with a daemon running for its installation.
            "token_daemon_running": [*command(r), "token"],
        }
        # The same command on an installation that chose [store] backend = "file".
        cases["token_file_store"] = [*command(r), "token"]
        envs = dict.fromkeys(cases, r.env) | {
            "token_file_store": r.file_store_env(),
            "token_daemon_running": daemon_env,
        }
        times: dict[str, list[float]] = {name: [] for name in cases}
        rss = {
            name: [peak_rss_kib(argv, envs[name]) for _ in range(3)] for name, argv in cases.items()
        }
        for round_ in range(runs + 1):
            for name, argv in cases.items():
                seconds, _, out = run_measured(argv, envs[name])
                answers = (
                    "token",
                    "python_read_item",
                    "token_file_store",
                    "python_ask_socket",
                    "token_daemon_running",
                )
                if name in answers and not out.strip():
                    raise RuntimeError(f"{name} printed nothing")
                if round_:  # round 0 warms the page cache, writes .pyc files and the token record
                    times[name].append(seconds)
        profile = import_profile(r, "token")
        daemon_answers = answered()
    ms = {name: round(median(values) * 1000, 1) for name, values in times.items()}
    ratio = round(ms["token"] / ms["secret_tool_lookup"], 2)
    return {
        "runs": runs,
        "median_ms": ms,
        "max_rss_mib": {name: round(median(values) / 1024, 1) for name, values in rss.items()},
        "token_vs_secret_tool": ratio,
        "token_minus_python_ms": round(ms["token"] - ms["python_pass"], 1),
        "token_minus_python_read_item_ms": round(ms["token"] - ms["python_read_item"], 1),
        "ask_socket_vs_secret_tool": round(ms["python_ask_socket"] / ms["secret_tool_lookup"], 2),
        "token_daemon_running_vs_secret_tool": round(
            ms["token_daemon_running"] / ms["secret_tool_lookup"], 2
        ),
        # Whether the daemon listened on its socket (False on a version without it).
        "daemon_answers_token": daemon_answers,
        "goals": {
            "token_median_ms_max": TOKEN_GOAL_MS,
            "ratio_to_secret_tool_max": TOKEN_GOAL_RATIO,
            "met_ms": ms["token"] <= TOKEN_GOAL_MS,
            "met_ratio": ratio <= TOKEN_GOAL_RATIO,
        },
        "import_profile": profile,
    }
