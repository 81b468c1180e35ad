"""tvmaniac-refreshd keeps an OAuth session alive: tokens in the OS keyring, refreshed in time."""

from __future__ import annotations

__version__ = "0.1.0"
