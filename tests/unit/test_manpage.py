"""The man page: the committed file is what the parser and the reference pages make, and man(1)
reads it."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from scripts.manpage import reference_pages, render
from tvmaniac_refreshd.cli.completion import model
from tvmaniac_refreshd.cli.parser import build_parser

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "man" / "tvmaniac-refreshd.1"
DOCS = ROOT / "docs"


def test_the_committed_page_is_up_to_date() -> None:
    made = render(build_parser(), reference_pages(DOCS))

    assert PAGE.read_text(encoding="utf-8") == made, "run `make man` and commit the page"


def test_man_renders_it_without_warnings_and_it_names_every_verb() -> None:
    if shutil.which("man") is None:
        pytest.fail("man is missing: run `make system-deps` (man-db)")
    result = subprocess.run(
        ["man", "--warnings", "-l", str(PAGE)],
        capture_output=True,
        text=True,
        env={**os.environ, "MANWIDTH": "100", "MANPAGER": "cat", "PAGER": "cat"},
        timeout=60,
        check=False,
    )

    assert (result.returncode, result.stderr) == (0, "")
    text = result.stdout
    for heading in (
        "NAME",
        "SYNOPSIS",
        "COMMANDS",
        "EXIT CODES",
        "FILES",
        "ENVIRONMENT",
        "SEE ALSO",
    ):
        assert f"\n{heading}\n" in text
    for path in model(build_parser()):
        assert path in text, path
    assert "git-credential" in text
    assert "77" in text
