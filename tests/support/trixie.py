"""A Debian 13 (trixie, systemd 257) root tree for containers, for what needs a newer systemd than
the host's Debian 12 (252): user-scoped `systemd-creds` (systemd 256+).

Built once per machine with ``debootstrap`` from Debian's mirror (about 3 minutes and 100 MB) into
``/var/cache/tvmaniac-refreshd-tests/trixie``, then reused; a half-built tree is never used. The
host's interpreter (Python 3.11 and its standard library) is bound into the container, so the
project runs there from the same virtual environment as the tests.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

CACHE = Path("/var/cache/tvmaniac-refreshd-tests")
ROOT = CACHE / "trixie"
MIRROR = "http://deb.debian.org/debian"
# systemd and a user session bus, and the shared libraries the host's Python 3.11 needs.
PACKAGES = (
    "systemd,systemd-sysv,dbus,dbus-user-session,libssl3t64,libffi8,libexpat1,zlib1g,"
    "ca-certificates"
)
BUILD_TIMEOUT = 1200.0


def trixie_root() -> Path:
    """Return the trixie tree, building it first if this machine has none.

    Raises:
        RuntimeError: debootstrap is missing or failed (its output says why).
    """
    if ROOT.is_dir():
        return ROOT
    if shutil.which("debootstrap") is None:
        raise RuntimeError("debootstrap is missing (scripts/install-system-deps.sh installs it)")
    partial = CACHE / "trixie.partial"
    CACHE.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(partial, ignore_errors=True)
    result = subprocess.run(
        [
            "debootstrap",
            "--variant=minbase",
            f"--include={PACKAGES}",
            "trixie",
            str(partial),
            MIRROR,
        ],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"debootstrap failed: {result.stdout[-2000:]}{result.stderr[-2000:]}")
    partial.rename(ROOT)  # only a complete tree ever has the final name
    return ROOT


def interpreter_binds() -> list[Path]:
    """The host interpreter and its standard library, to bind into a trixie container."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    return [Path(sys.base_prefix, "bin", f"python{version}"), Path(sysconfig.get_paths()["stdlib"])]


def interpreter() -> str:
    """The host interpreter's path inside the container (the venv's python resolves elsewhere)."""
    return str(interpreter_binds()[0])


def python_path(repo: Path) -> str:
    """PYTHONPATH for the project and the test venv's packages, inside the container."""
    return f"{repo}:{sysconfig.get_paths()['purelib']}"
