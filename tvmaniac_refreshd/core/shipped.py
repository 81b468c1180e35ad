"""Files that ship with the program: in the wheel under ``tvmaniac_refreshd/data/``, in a
source checkout at the repository root (pyproject.toml's force-include maps one onto the other).
"""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]
# The shipped example config: the wheel's name for it, then the source tree's.
EXAMPLE_CONFIG = ("refreshd.example.toml", "config/refreshd.example.toml")


def shipped_file(*relatives: str) -> Path | None:
    """Return the first of ``relatives`` found in the wheel's data, then in the source tree."""
    for relative in relatives:
        for candidate in (PACKAGE / "data" / relative, PACKAGE.parent / relative):
            if candidate.is_file():
                return candidate
    return None
