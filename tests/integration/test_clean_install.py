"""The wheel installs from wheels only, with Debian 12's pip and with a current pip.

A dependency shipped only as a source archive (sdnotify was one) makes pip 23 run its
setup.py, with a "legacy setup.py install" deprecation, and fails once pip builds every
source archive through PEP 517. ``--only-binary :all:`` refuses any source archive, so it
fails exactly then, with either pip.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.harness import REPO

PIP_TIMEOUT = 600  # a cold pip cache downloads the dependencies once
DEBIAN_PYTHON = Path("/usr/bin/python3")  # Debian's own, whose ensurepip brings pip 23.0.1


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "-q",
            "wheel",
            "--no-deps",
            "--wheel-dir",
            str(dist),
            str(REPO),
        ],
        check=True,
        timeout=PIP_TIMEOUT,
    )
    (built,) = dist.glob("tvmaniac_refreshd-*.whl")
    return built


def only_wheels(pip: list[str], wheel: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*pip, "install", "--disable-pip-version-check", "--only-binary", ":all:", str(wheel)],
        capture_output=True,
        text=True,
        timeout=PIP_TIMEOUT,
        check=False,
    )


def test_debian_12s_pip_installs_it_from_wheels_only(wheel: Path, tmp_path: Path) -> None:
    if not DEBIAN_PYTHON.exists():
        pytest.skip("not a Debian system python")
    subprocess.run([str(DEBIAN_PYTHON), "-m", "venv", str(tmp_path / "venv")], check=True)
    pip = [str(tmp_path / "venv" / "bin" / "python"), "-m", "pip"]

    result = only_wheels(pip, wheel)

    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "setup.py" not in result.stdout + result.stderr


def test_a_current_pip_installs_it_from_wheels_only(wheel: Path, tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "venv")], check=True
    )
    # The project's own pip (the Makefile asks for >= 25.1), installing into the new venv.
    pip = [sys.executable, "-m", "pip", "--python", str(tmp_path / "venv" / "bin" / "python")]

    result = only_wheels(pip, wheel)

    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    installed = subprocess.run(
        [str(tmp_path / "venv" / "bin" / "python"), "-c", "import tvmaniac_refreshd.daemon.notify"],
        check=False,
    )
    assert installed.returncode == 0
