"""The documentation: what the site cannot check by itself (mkdocs --strict checks its links)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
CONFIGURATION_PAGE = DOCS / "reference" / "configuration.md"
EXAMPLE = ROOT / "config" / "refreshd.example.toml"


def test_the_configuration_reference_carries_the_shipped_example() -> None:
    page = CONFIGURATION_PAGE.read_text(encoding="utf-8")
    block = re.search(r"^```toml\n(.*?)^```$", page, re.M | re.S)

    assert block is not None
    assert block.group(1) == EXAMPLE.read_text(encoding="utf-8"), "copy the example into the page"


def test_the_readme_links_to_pages_that_exist() -> None:
    """The README is outside the site, so mkdocs does not check its links."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme)
    local = [t for t in targets if "://" not in t]

    assert local, "the README links into docs/"
    assert [t for t in local if not (ROOT / t).exists()] == []


def test_every_page_is_in_the_navigation() -> None:
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    pages = sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md"))

    assert [p for p in pages if f": {p}\n" not in nav] == []


def test_the_exit_codes_page_shows_the_table_help_shows() -> None:
    from tvmaniac_refreshd.core.errors import EXIT_MEANINGS  # noqa: PLC0415

    page = (DOCS / "reference" / "exit-codes.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| (\d+) \| (.+) \|$", page, re.M)

    assert [(int(code), meaning) for code, meaning in rows] == list(EXIT_MEANINGS)


def test_help_lines_fit_a_terminal() -> None:
    """Prose in --help is wrapped to the width; only usage lines and examples may be longer."""
    import argparse  # noqa: PLC0415
    import contextlib  # noqa: PLC0415
    import io  # noqa: PLC0415
    import os  # noqa: PLC0415

    from tvmaniac_refreshd.cli.parser import build_parser  # noqa: PLC0415

    def _verbs(node: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
        found = []
        for action in node._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    found += [(name, child), *_verbs(child)]
        return found

    os.environ["COLUMNS"] = "80"
    try:
        parser = build_parser()
        long = []
        for path, child in [("", parser), *_verbs(parser)]:
            text = io.StringIO()
            with contextlib.redirect_stdout(text):
                child.print_help()
            long += [
                f"{path}: {line}"
                for line in text.getvalue().splitlines()
                if len(line) > 80 and not line.startswith(" ")
            ]
    finally:
        del os.environ["COLUMNS"]

    assert long == []
