"""The container recipe: `run` as the main process of a container with no systemd inside, the
file store on a volume, `status --json` as the health check, and an invalid config exiting 78
at once instead of restarting in a loop. The container is an nspawn process container over an
overlay of the host (tests/support/process_container.py); the emulator runs in the test process.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.support.container import available, poll
from tests.support.harness import CLIENT_ID, CLIENT_SECRET, REPO
from tests.support.process_container import ProcessContainer
from trakt_emulator import Emulator

pytestmark = pytest.mark.container

LIFETIME = 20  # seconds: the daemon refreshes every ~10 s
# What an image would set: the config and the state (with the token files) on volumes.
ENV = {
    # The state directory follows HOME (storage/layout.py): the home is the volume.
    "HOME": "/data",
    "TVMANIAC_REFRESHD_CONFIG": "/config/config.toml",
    "PYTHONPATH": str(REPO),
}
COMMAND = [sys.executable, "-m", "tvmaniac_refreshd"]


@pytest.fixture
def volumes(tmp_path: Path) -> dict[Path, str]:
    reason = available()
    if reason is not None:
        pytest.fail(f"cannot run an nspawn container here: {reason}")
    config, data = tmp_path / "config", tmp_path / "data"
    config.mkdir(mode=0o700)
    data.mkdir(mode=0o700)
    return {config: "/config", data: "/data"}


def write_config(volumes: dict[Path, str], text: str) -> None:
    path = next(host for host, inside in volumes.items() if inside == "/config") / "config.toml"
    path.write_text(text)
    path.chmod(0o600)


def test_an_invalid_config_exits_78_at_once(volumes: dict[Path, str]) -> None:
    write_config(volumes, '[accounts.default]\nprovider = "trakt"\n[store]\nbackend = "file"\n')
    with ProcessContainer([*COMMAND, "run"], volumes=volumes, env=ENV) as container:
        code = container.wait(timeout=60)
        output = container.output()

    assert code == 78, output
    assert "client_id" in output


def test_run_as_the_main_process_with_the_file_store_on_a_volume(
    volumes: dict[Path, str],
) -> None:
    with Emulator(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, access_ttl=LIFETIME) as emu:
        write_config(
            volumes,
            "[accounts.default]\n"
            f'provider = "trakt"\nclient_id = "{CLIENT_ID}"\nclient_secret = "{CLIENT_SECRET}"\n'
            f'auth_url = "{emu.url}"\napi_url = "{emu.url}"\n'
            '[store]\nbackend = "file"\n[alerts]\ndesktop = false\n',
        )
        # `docker run --rm -it -v ... IMAGE login`: a one-off container on the same volumes.
        emu.configure(auto_approve_after_polls=0, device_interval=1)
        with ProcessContainer([*COMMAND, "login"], volumes=volumes, env=ENV) as login:
            assert login.wait(timeout=60) == 0, login.output()
        data = next(host for host, inside in volumes.items() if inside == "/data")
        stored = data / ".local" / "state" / "tvmaniac-refreshd" / "tokens" / "default.json"
        assert stored.stat().st_mode & 0o777 == 0o600

        with ProcessContainer([*COMMAND, "run"], volumes=volumes, env=ENV) as daemon:

            def healthy_and_refreshed() -> dict[str, object] | None:
                check = daemon.exec([*COMMAND, "status", "--json"])
                if check.returncode != 0:
                    return None
                report = json.loads(check.stdout)
                refreshed = report["accounts"][0]["last_result"] == "refreshed"
                return report if refreshed and report["daemon"]["running"] else None

            report = poll(healthy_and_refreshed, timeout=90, what="a refresh by the daemon")
            assert report["store"]["backend"] == "file"  # type: ignore[index]
            assert daemon.stop() == 0, daemon.output()
            output = daemon.output()
        assert "refresh.finished" in output  # the log goes to stderr, the container's log
        assert emu.counters()["invalid_grant"] == 0
        for grant in emu.state()["grants"]:  # type: ignore[attr-defined]
            assert grant["refresh_token"] not in output
            assert grant["access_token"] not in output
