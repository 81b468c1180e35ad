"""`make dist`: the sdist and the wheel built from it pass twine's strict check; the sdist is
enough to rebuild and test the program; a venv or pipx install of the wheel gives `man` the
page and bash its TAB completion, with nothing copied by hand."""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import venv
from pathlib import Path

import pytest

from tests.integration.test_completion import Terminal
from tests.support.packages import dist, run
from tvmaniac_refreshd import __version__

PROG = "tvmaniac-refreshd"
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"
# What a downstream packager needs from the sdist alone (issue 31).
PACKAGER_FILES = (
    "LICENSE",
    "CHANGELOG.md",
    "README.md",
    "Makefile",
    "pyproject.toml",
    "man/tvmaniac-refreshd.1",
    "completions/tvmaniac-refreshd.bash",
    "completions/_tvmaniac-refreshd",
    "completions/tvmaniac-refreshd.fish",
    "systemd/tvmaniac-refreshd.service",
    "systemd/tvmaniac-refreshd-refresh.service",
    "systemd/tvmaniac-refreshd-refresh.timer",
    "launchd/com.tvmaniac.refreshd.plist",
    "launchd/com.tvmaniac.refreshd.refresh.plist",
    "config/refreshd.example.toml",
    "tests/unit/test_packaging.py",
    "tests/integration/test_deb.py",
    "packaging/debian/rules",
    "packaging/homebrew/tvmaniac-refreshd.rb",
    "packaging/lock.json",
)


def sdist_names() -> set[str]:
    with tarfile.open(dist().sdist) as archive:
        return {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}


def test_both_artifacts_pass_twine_check_strict() -> None:
    built = dist()

    assert built.twine.returncode == 0, built.twine.stdout + built.twine.stderr
    assert built.sdist.name == f"tvmaniac_refreshd-{__version__}.tar.gz"
    assert built.wheel.name == f"tvmaniac_refreshd-{__version__}-py3-none-any.whl"


def test_the_sdist_holds_what_a_packager_needs_and_no_scratch() -> None:
    names = sdist_names()

    assert [name for name in PACKAGER_FILES if name not in names] == []
    scratch = (".venv/", "node_modules/", "site/", ".ci/", "bench/results/", "__pycache__/")
    assert [name for name in names if any(part in f"{name}/" for part in scratch)] == []


def test_make_check_passes_in_the_unpacked_sdist(tmp_path: Path) -> None:
    """The lint, the docs and the unit tests, from the sdist alone (no git, no checkout)."""
    # tar(1): Debian 12's Python 3.11.2 has no extraction filters yet.
    run(["tar", "-xzf", str(dist().sdist), "-C", str(tmp_path)], timeout=120)
    tree = tmp_path / f"tvmaniac_refreshd-{__version__}"
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("VIRTUAL_ENV", "PYTHONPATH") and not key.startswith("PYTEST")
    }
    env["PATH"] = SYSTEM_PATH

    result = run(["make", "check"], cwd=tree, env=env, timeout=1800)

    assert " passed" in result.stdout.splitlines()[-1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with the wheel installed as pip and pipx install it (pipx is a venv per app)."""
    prefix = tmp_path_factory.mktemp("venv")
    venv.create(prefix, with_pip=True)
    run(
        [str(prefix / "bin/python"), "-m", "pip", "install", "-q", "--no-deps", str(dist().wheel)],
        timeout=600,
    )
    return prefix


def test_man_finds_the_page_from_path_alone(installed: Path) -> None:
    """man-db derives PREFIX/share/man from PREFIX/bin on PATH: no MANPATH needed."""
    if shutil.which("man") is None:
        pytest.fail("man is missing: run `make system-deps` (man-db)")
    env = {"PATH": f"{installed / 'bin'}:{SYSTEM_PATH}", "HOME": str(installed)}

    result = subprocess.run(
        ["man", "-w", PROG], capture_output=True, text=True, env=env, timeout=60, check=False
    )

    assert result.stdout.strip() == str(installed / "share/man/man1/tvmaniac-refreshd.1")


@pytest.mark.parametrize(
    "path",
    [
        "share/bash-completion/completions/tvmaniac-refreshd",
        "share/zsh/site-functions/_tvmaniac-refreshd",
        "share/fish/vendor_completions.d/tvmaniac-refreshd.fish",
    ],
)
def test_the_completions_are_installed(installed: Path, path: str) -> None:
    assert (
        (installed / path)
        .read_text(encoding="utf-8")
        .startswith("#compdef" if "zsh" in path else "# ")
    )


def test_bash_completes_right_after_the_install(
    installed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """bash-completion's own loader sources the installed script on the first TAB, by the
    command's name: nothing sourced by hand. bash-completion 2.12 and later look in
    PREFIX/share beside the command found on PATH; Debian 12's 2.11 looks only in
    XDG_DATA_DIRS, which is set here as a user of 2.11 would (docs/guide/install.md)."""
    loader = Path("/usr/share/bash-completion/bash_completion")
    if not loader.exists():
        pytest.fail("bash-completion is missing: run `make system-deps`")
    monkeypatch.setenv("PATH", f"{installed / 'bin'}:{SYSTEM_PATH}")
    data_dirs = f"{installed / 'share'}:/usr/local/share:/usr/share"
    terminal = Terminal(["bash", "--norc", "--noprofile", "-i"], tmp_path)
    try:
        terminal.type(f"export XDG_DATA_DIRS={data_dirs}; source {loader}; echo loaded-$((6*7))\n")
        assert terminal.wait_for("loaded-42"), terminal.screen
        terminal.type(f"{PROG} service ins\t")
        assert terminal.wait_for(f"{PROG} service install"), terminal.screen
    finally:
        terminal.close()
