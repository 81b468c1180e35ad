"""A Trakt.tv OAuth emulator on loopback: device flow, refresh rotation, faults and test hooks.

Stdlib only, so the project's tests, demo and benchmarks can run it in-process
(`Emulator`) or as ``python -m trakt_emulator`` driven through `EmulatorControl`.
"""

from __future__ import annotations

from trakt_emulator.control import EmulatorControl, EmulatorControlError
from trakt_emulator.emulator import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, Emulator
from trakt_emulator.options import ACCESS_TTL, DEVICE_EXPIRES_IN, DEVICE_INTERVAL

__all__ = [
    "ACCESS_TTL",
    "DEFAULT_CLIENT_ID",
    "DEFAULT_CLIENT_SECRET",
    "DEVICE_EXPIRES_IN",
    "DEVICE_INTERVAL",
    "Emulator",
    "EmulatorControl",
    "EmulatorControlError",
]
