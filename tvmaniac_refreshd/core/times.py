"""Moments as people and programs read them: local time with its zone for people, ISO 8601 UTC
for JSON, the journal's MESSAGE and any stream a program reads."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, MutableMapping
from typing import Any


def iso_utc(timestamp: float) -> str:
    """Return unix seconds as ISO 8601 UTC with a ``Z`` (``2026-12-06T10:00:00Z``)."""
    moment = dt.datetime.fromtimestamp(int(timestamp), tz=dt.UTC)
    return moment.isoformat().replace("+00:00", "Z")


def local_time(moment: dt.datetime | float) -> str:
    """Return a moment in the local time zone, with the zone's name (``2026-12-06 11:00 CET``)."""
    if not isinstance(moment, dt.datetime):
        moment = dt.datetime.fromtimestamp(int(moment), tz=dt.UTC)
    local = moment.astimezone()
    zone = local.tzname() or local.strftime("UTC%z")
    return f"{local:%Y-%m-%d %H:%M} {zone}"


def stamp_for_people(
    _logger: object, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A structlog processor: the record's time, local with its zone, to the second."""
    local = dt.datetime.now(tz=dt.UTC).astimezone()
    zone = local.tzname() or local.strftime("UTC%z")
    event_dict["timestamp"] = f"{local:%Y-%m-%d %H:%M:%S} {zone}"
    return event_dict


def is_moment_field(key: str, value: object) -> bool:
    """Whether a log field holds a moment: ``*_at`` in unix seconds."""
    return key.endswith("_at") and isinstance(value, int | float) and not isinstance(value, bool)


def moment_fields(*, for_people: bool) -> Callable[..., MutableMapping[str, Any]]:
    """A structlog processor that writes each ``*_at`` field as local time (``for_people``: a
    terminal) or as ISO 8601 UTC (a stream a program or a log collector reads)."""
    show = local_time if for_people else iso_utc

    def processor(
        _logger: object, _method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for key, value in event_dict.items():
            if is_moment_field(key, value):
                try:
                    event_dict[key] = show(value)
                except (OverflowError, OSError, ValueError):
                    continue
        return event_dict

    return processor
