"""Shared fixtures: the real keyring session, and a clean structlog setup per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog

pytest_plugins = ["tests.support.keyring_fixtures"]


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    """Each test starts from structlog's defaults, whatever the previous one configured."""
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


@pytest.fixture(autouse=True)
def _forget_secrets() -> Iterator[None]:
    """Each test starts with no registered secret: a short one would redact words elsewhere."""
    from tvmaniac_refreshd.core import logs  # noqa: PLC0415

    saved = logs._known
    logs._known = logs._Known()
    yield
    logs._known = saved
