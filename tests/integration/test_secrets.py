"""No token or client secret in logs at any verbosity, STATUS texts, argv or environment of our
processes and hooks, or any file we write; and every file we write is private."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from tests.integration.test_daemon import DAEMON_CONFIG, LIFETIME, Daemon
from tests.support.harness import Harness, wait_until


def proc_text(pid: int) -> str:
    """Return the argv and environment of a running process as one string ("" once gone)."""
    base = Path(f"/proc/{pid}")
    try:
        return (base / "cmdline").read_bytes().decode(errors="replace") + (
            base / "environ"
        ).read_bytes().decode(errors="replace")
    except OSError:
        return ""


def leaked(text: str, harness: Harness) -> list[str]:
    return [secret[:6] + "..." for secret in harness.secrets() if secret in text]


@pytest.mark.parametrize(
    "args",
    [
        ("-v", "refresh", "--force"),
        ("-vv", "token", "--min-valid", "7d"),  # the whole lifetime: a refresh
        ("-v", "status", "--json"),
        ("-v", "status"),
        ("-v", "config", "check"),
        ("-v", "logout"),
    ],
)
def test_verbose_output_has_no_secret(harness: Harness, args: tuple[str, ...]) -> None:
    """Debug logging on every verb: the end-of-test scan finds no token or secret."""
    harness.seed()
    run = harness.run(*args)

    assert run.code == 0, run.err
    assert run.err or run.out


def test_daemon_argv_environment_status_and_hooks(harness: Harness, tmp_path: Path) -> None:
    """While the daemon runs: its argv and environment, its STATUS texts, and a running hook's
    argv and environment hold no secret."""
    pid_file = tmp_path / "hook.pid"
    harness.extra_config = DAEMON_CONFIG + (
        f'on_refreshed = ["sh", "-c", "echo $$ > {pid_file}; exec sleep 30"]\n'
        'hook_timeout = "40s"\n'
    )
    harness.write_config()
    harness.emulator.set_ttl(LIFETIME)
    harness.seed(expires_in=LIFETIME)
    daemon = Daemon(harness, tmp_path)
    daemon.receive_until("READY=1")
    wait_until(
        lambda: pid_file.exists() and pid_file.read_text().strip().isdigit(),
        timeout=60,
        what="the hook to start",
    )
    hook_pid = int(pid_file.read_text().strip())
    # Read once the hook has exec'd into its final program: mid-exec /proc shows nothing.
    wait_until(
        lambda: "TVMANIAC_REFRESHD_EVENT=" in proc_text(hook_pid),
        timeout=20,
        what="the hook's environment in /proc",
    )
    hook = proc_text(hook_pid)
    own = proc_text(daemon.process.pid)
    run = daemon.stop()

    assert "TVMANIAC_REFRESHD_EVENT=refreshed" in hook
    assert leaked(hook, harness) == []
    assert leaked(own, harness) == []
    assert leaked("\n".join(daemon.messages), harness) == []
    assert run.code == 0


def test_written_files_are_private_and_secret_free(harness: Harness, tmp_path: Path) -> None:
    """Every file the project writes outside the keyring is 0600 or tighter, with no secret."""
    harness.extra_config = DAEMON_CONFIG
    harness.write_config()
    harness.seed(age=0.9 * 604800)
    assert harness.run("refresh").code == 0
    daemon = Daemon(harness, tmp_path)
    daemon.receive_until("READY=1")
    assert harness.run("token").code == 0
    daemon.stop()
    written = [
        path
        for root in (harness.state_dir, harness.root / "runtime")
        for path in root.rglob("*")
        if path.is_file()
    ]

    assert written, "expected state and lock files"
    for path in written:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o077 == 0, f"{path} has mode {oct(mode)}"
        assert leaked(path.read_text(errors="replace"), harness) == [], path
    for directory in {path.parent for path in written}:
        assert stat.S_IMODE(directory.stat().st_mode) & 0o077 == 0, directory


def test_http_client_verifies_tls() -> None:
    """The HTTP client verifies certificates; no setting turns that off."""
    import ssl  # noqa: PLC0415

    from tvmaniac_refreshd.config.settings import HttpSettings  # noqa: PLC0415
    from tvmaniac_refreshd.providers.http import make_http_client  # noqa: PLC0415

    with make_http_client(HttpSettings()) as client:
        transport = client._transport
        context = transport._pool._ssl_context  # type: ignore[attr-defined]
        assert context.verify_mode == ssl.CERT_REQUIRED
        assert context.check_hostname is True
    assert "verify" not in Path("config/refreshd.example.toml").read_text()
