"""Durations as written in the config and on the command line."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tvmaniac_refreshd.core.durations import format_duration, parse_duration


class TestParseDuration:
    @pytest.mark.parametrize(
        ("text", "seconds"),
        [
            ("90s", 90),
            ("15m", 900),
            ("5h", 18000),
            ("2d", 172800),
            ("1h30m", 5400),
            (" 7D ", 604800),
        ],
    )
    def test_units(self, text: str, seconds: int) -> None:
        """Each unit and a compound form parse to seconds."""

        assert seconds == parse_duration(text)

    @pytest.mark.parametrize("text", ["", "5", "h", "5x", "-5s", "1.5h", "5 h", "5hh"])
    def test_rejects_malformed(self, text: str) -> None:
        """Anything but digits-and-unit pairs is a ValueError naming the input."""
        with pytest.raises(ValueError, match="not a duration"):
            parse_duration(text)

    @given(st.text(max_size=20))
    def test_any_text_gives_seconds_or_value_error(self, text: str) -> None:
        """No input raises anything but ValueError."""
        try:
            result = parse_duration(text)
        except ValueError:
            return
        assert result >= 0


class TestFormatDuration:
    @pytest.mark.parametrize(
        ("seconds", "text"),
        [
            (0, "0s"),
            (42, "42s"),
            (3661, "1h 1m"),
            (86400, "1d"),
            (6 * 86400 + 4 * 3600 + 5, "6d 4h"),
            # The last unit is rounded (issue 25): a 7-day token a second old is 7d.
            (7 * 86400 - 1, "7d"),
            (86400 - 20, "1d"),
            (3600 + 29, "1h"),
        ],
    )
    def test_two_units_at_most(self, seconds: int, text: str) -> None:
        """The largest two units are shown."""

        assert text == format_duration(seconds)

    def test_negative_is_zero(self) -> None:
        """A negative span prints as 0s rather than a confusing sign."""

        assert format_duration(-5) == "0s"
