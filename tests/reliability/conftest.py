"""The reliability tests need the real keyring tools; without them they fail, never skip."""

from __future__ import annotations

import pytest

from tests.support.keyring_session import missing_tools


@pytest.fixture(autouse=True)
def _tools() -> None:
    missing = missing_tools()
    if missing:
        # A silent skip would hide that the crash paths and races were never run.
        pytest.fail(
            f"the reliability tests need {', '.join(missing)}; run `make test`", pytrace=False
        )
