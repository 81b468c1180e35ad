"""Integration fixtures: a Trakt emulator per test, and the harness that runs the real command.

Every test that uses ``harness`` is checked at its end for secrets in any command's output.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.harness import CLIENT_ID, CLIENT_SECRET, Harness
from tests.support.keyring_session import KeyringSession
from trakt_emulator import Emulator


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    """A fresh Trakt emulator on a free loopback port, polling interval 1 s."""
    with Emulator(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, device_interval=1) as running:
        yield running
        assert running.errors == []


@pytest.fixture
def harness(emulator: Emulator, clean_keyring: KeyringSession, tmp_path: Path) -> Iterator[Harness]:
    """The real command wired to the emulator and the private keyring; checked for leaks."""
    rig = Harness(emulator=emulator, keyring=clean_keyring, root=tmp_path)
    yield rig
    assert rig.leaks() == []


@pytest.fixture
def any_harness(
    emulator: Emulator, clean_any_keyring: KeyringSession, tmp_path: Path
) -> Iterator[Harness]:
    """``harness`` on gnome-keyring, KeePassXC and KWallet in turn."""
    rig = Harness(emulator=emulator, keyring=clean_any_keyring, root=tmp_path)
    yield rig
    assert rig.leaks() == []
