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
    """Return a short human form of ``seconds``, at most two units, e.g. ``6d 4h`` or ``42s``.

    The last unit shown is rounded, not cut: a 7-day token a second old is "7d", not "6d 23h".
    """
    remaining = max(0, round(seconds))
    units = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
    shown: tuple[tuple[str, int], ...] = units[-1:]
    for _ in range(2):  # rounding may carry into a larger unit (23h 59m 40s is 1d)
        first = next((i for i, (_, size) in enumerate(units) if remaining >= size), len(units) - 1)
        shown = units[first : first + 2]
        smallest = shown[-1][1]
        remaining = round(remaining / smallest) * smallest
    parts: list[str] = []
    for unit, size in shown:
        count, remaining = divmod(remaining, size)
        if count or not parts:
            parts.append(f"{count}{unit}")
    return " ".join(parts)
