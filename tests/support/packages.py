"""The release artifacts, built once per test session the way `make dist` and `make deb` do.

The sdist comes first and everything else from it alone (the wheel, the .deb, the unpacked tree
that `make check` runs in), as a downstream packager gets it. hatch builds it reproducibly, so
its SHA-256 keys a cache of the .deb (build/deb-cache/, git-ignored): the .deb takes minutes
(dh-virtualenv installs every locked dependency), and an unchanged tree is not built twice.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tvmaniac_refreshd import __version__

REPO = Path(__file__).resolve().parents[2]
DEB_CACHE = REPO / "build" / "deb-cache"
# Bounds for a busy shared machine, not expectations.
BUILD_TIMEOUT = 900
DEB_TIMEOUT = 1800


@dataclass(frozen=True)
class Dist:
    sdist: Path
    wheel: Path
    twine: subprocess.CompletedProcess[str]


def _scratch() -> Path:
    return Path(tempfile.mkdtemp(prefix="refreshd-dist-"))


@functools.cache
def dist() -> Dist:
    """`make dist`: the sdist, the wheel built from it, and twine's strict check of both."""
    out = _scratch()
    run([sys.executable, "-m", "build", "--outdir", str(out), str(REPO)], timeout=BUILD_TIMEOUT)
    (sdist,) = out.glob("*.tar.gz")
    (wheel,) = out.glob("*.whl")
    twine = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", str(sdist), str(wheel)],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        check=False,
    )
    return Dist(sdist, wheel, twine)


@functools.cache
def deb() -> Path:
    """`make deb` from the sdist of ``dist()``: its .deb, built (and lintian-checked) once per
    sdist content."""
    sdist = dist().sdist
    key = hashlib.sha256(sdist.read_bytes()).hexdigest()[:16]
    cached = DEB_CACHE / key
    found = sorted(cached.glob(f"tvmaniac-refreshd_{__version__}_*.deb"))
    if found:
        return found[0]
    staging = Path(tempfile.mkdtemp(prefix="refreshd-deb-", dir=_parent(DEB_CACHE)))
    try:
        # Debian's tools from the system PATH, never the test venv's python3.
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHON": sys.executable}
        env["HOME"] = os.environ.get("HOME", "/root")
        build = REPO / "packaging/debian/build.sh"
        run(["sh", str(build), str(staging), str(sdist)], env=env, timeout=DEB_TIMEOUT)
        # Only a finished, lintian-clean build enters the cache, which keeps just the newest.
        for old in DEB_CACHE.iterdir():
            if old != staging:
                shutil.rmtree(old, ignore_errors=True)
        staging.rename(cached)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return sorted(cached.glob(f"tvmaniac-refreshd_{__version__}_*.deb"))[0]


def run(
    argv: list[str],
    *,
    timeout: float,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a build step; a failure shows the end of its output, which says why."""
    result = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=env,
        check=False,
    )
    if result.returncode != 0:
        said = (result.stdout + result.stderr)[-4000:]
        raise AssertionError(f"{' '.join(argv)} failed ({result.returncode}):\n{said}")
    return result


def _parent(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
