"""The idle benchmark counts wake-ups over whole periods of the unit as installed."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest

from bench.idle import Rhythm, timespan, unit_watchdog


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("15min", 900), ("900", 900), ("1h 30min", 5400), ("500ms", Fraction(1, 2)), ("0", 0)],
)
def test_timespan_reads_systemd_spans(text: str, seconds: float) -> None:
    assert timespan(text) == seconds


def test_timespan_refuses_what_systemd_would() -> None:
    with pytest.raises(ValueError, match="time span"):
        timespan("15 parsecs and a bit!")


def test_the_watchdog_is_read_from_the_unit(tmp_path: Path) -> None:
    unit = tmp_path / "x.service"
    unit.write_text("[Service]\nType=notify\nWatchdogSec=20min\n")
    assert unit_watchdog(unit) == 1200
    unit.write_text("[Service]\nType=notify\n")
    assert unit_watchdog(unit) == 0
    assert unit_watchdog() >= 0  # the shipped unit parses


@pytest.mark.parametrize("watchdog", [Fraction(0), Fraction(900), Fraction(1800), Fraction(1860)])
def test_the_window_holds_whole_periods(watchdog: Fraction) -> None:
    rhythm = Rhythm.fit(watchdog, 60)
    periods = [rhythm.tick, rhythm.check, *([rhythm.ping] if rhythm.ping else [])]
    for period in periods:
        assert (rhythm.window / rhythm.scaled(period)).denominator == 1
    assert rhythm.scaled(rhythm.tick).denominator == 1  # the config takes whole seconds
    assert rhythm.window >= 60
    # 20 switches in a 60 s window at 1/300 stand for 20 in 5 hours: 4 an hour.
    assert Rhythm.fit(Fraction(900), 60).per_hour(20) == 4.0
