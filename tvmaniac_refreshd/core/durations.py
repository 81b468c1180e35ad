"""Parse and print the human durations used in the config and on the command line."""

from __future__ import annotations

import re

_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_PART = re.compile(r"(\d+)([smhd])")
_WHOLE = re.compile(r"(?:\d+[smhd])+")


def parse_duration(text: str) -> int:
    """Return the number of seconds in ``text`` e.g. ``90s``, ``15m``, ``5h``, ``2d``, ``1h30m``.

    Raises:
        ValueError: if ``text`` is not of that form.
    """
    cleaned = text.strip().lower()
    if not _WHOLE.fullmatch(cleaned):
        raise ValueError(f"{text!r} is not a duration like 90s, 15m, 5h or 2d")
    return sum(int(number) * _UNIT_SECONDS[unit] for number, unit in _PART.findall(cleaned))


def format_duration(seconds: float) -> str:
    """Return a short human form of ``seconds``, at most two units, e.g. ``6d 4h`` or ``42s``."""
    remaining = max(0, round(seconds))
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if remaining >= size or (unit == "s" and not parts):
            count, remaining = divmod(remaining, size)
            parts.append(f"{count}{unit}")
        if len(parts) == 2:
            break
    return " ".join(parts)
