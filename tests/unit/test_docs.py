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
