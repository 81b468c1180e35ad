"""Pytest fixtures for the private Secret Service (load with ``pytest_plugins``).

``keyring_session`` starts one gnome-keyring for the whole test run (about 0.1 s);
``clean_keyring`` hands it to a test with no items of the daemon's service and an
unlocked collection, and restores that state afterwards. ``any_secret_service`` and
``clean_any_keyring`` do the same for each of gnome-keyring, KeePassXC and KWallet in turn
(secret_services.py): a test that takes them runs once per Secret Service.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from tests.support.keyring_session import KeyringSession, missing_tools
from tests.support.secret_services import SESSIONS

# The keyring service name the daemon stores its tokens under.
SERVICE = "tvmaniac-refreshd"


@pytest.fixture(scope="session")
def keyring_session() -> Iterator[KeyringSession]:
    """Run one private dbus-daemon + gnome-keyring for the whole test session."""
    missing = missing_tools()
    if missing:
        # A silent skip would hide that the keyring paths were never tested.
        pytest.fail(
            f"the real Secret Service tests need {', '.join(missing)}, which are not "
            "installed; run `make test`, which installs gnome-keyring, libsecret-tools "
            "and dbus",
            pytrace=False,
        )
    with KeyringSession() as session:
        yield session


def _reset(session: KeyringSession) -> None:
    if session.is_locked():
        session.unlock()
    session.clear(SERVICE)


@pytest.fixture
def clean_keyring(keyring_session: KeyringSession) -> Iterator[KeyringSession]:
    """Give the test an unlocked collection with no items of service "tvmaniac-refreshd"."""
    _reset(keyring_session)
    yield keyring_session
    # A test that locked the collection must not make the next one fail with exit 69.
    _reset(keyring_session)


@pytest.fixture(scope="session", params=list(SESSIONS))
def any_secret_service(request: pytest.FixtureRequest) -> Iterator[KeyringSession]:
    """Run one private bus with gnome-keyring, KeePassXC or KWallet for the whole run."""
    kind = SESSIONS[request.param]
    missing = [tool for tool in kind.required_tools if shutil.which(tool) is None]
    if missing:
        pytest.fail(
            f"the {request.param} tests need {', '.join(missing)}; run "
            "scripts/install-system-deps.sh",
            pytrace=False,
        )
    with kind() as session:
        yield session


@pytest.fixture
def clean_any_keyring(any_secret_service: KeyringSession) -> Iterator[KeyringSession]:
    """``clean_keyring`` for each Secret Service in turn."""
    _reset(any_secret_service)
    yield any_secret_service
    _reset(any_secret_service)
