"""The daemon's remembered item paths never hand out an old pair (real gnome-keyring).

Each test reads through an ``ItemPaths`` as the daemon does, changes the keyring from another
process as a `refresh`, `logout` or `login` would, and reads again: the answer is always what
keyring's own backend (no cache, a fresh search) returns at that moment.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.support.keyring_session import KeyringSession, applied
from tvmaniac_refreshd.storage.item_paths import ItemPaths
from tvmaniac_refreshd.storage.secret_service import read_item, write_item

SERVICE = "tvmaniac-refreshd"
# What another process does, through keyring's own backend (python-keyring's attributes).
OTHER_PROCESS = (
    "import sys\n"
    "from keyring.backends import SecretService\n"
    "kr = SecretService.Keyring()\n"
    "verb, user = sys.argv[1], sys.argv[2]\n"
    "if verb == 'set':\n"
    "    kr.set_password(sys.argv[3], user, sys.stdin.read())\n"
    "elif verb == 'delete':\n"
    "    kr.delete_password(sys.argv[3], user)\n"
    "else:\n"
    "    print(kr.get_password(sys.argv[3], user))\n"
)


@pytest.fixture
def keyring_env(clean_keyring: KeyringSession) -> Iterator[KeyringSession]:
    with applied(clean_keyring.env):
        yield clean_keyring


def other_process(keyring: KeyringSession, verb: str, user: str, text: str = "") -> str:
    return subprocess.run(
        [sys.executable, "-c", OTHER_PROCESS, verb, user, SERVICE],
        input=text,
        text=True,
        env=keyring.env,
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout.strip()


def test_a_pair_rotated_by_another_process_is_read_new(keyring_env: KeyringSession) -> None:
    """`refresh` in another process rotates the pair: the remembered path gives the new one."""
    paths = ItemPaths()
    other_process(keyring_env, "set", "alice", "pair-1")
    assert read_item(SERVICE, "alice", paths=paths) == "pair-1"
    assert paths.get(SERVICE, "alice") is not None  # remembered: the next read is no search

    other_process(keyring_env, "set", "alice", "pair-2")

    assert read_item(SERVICE, "alice", paths=paths) == "pair-2"


def test_logout_and_login_elsewhere_are_seen(keyring_env: KeyringSession) -> None:
    """The item deleted (logout) reads as none; a new item (login) is found at its new path."""
    paths = ItemPaths()
    other_process(keyring_env, "set", "alice", "pair-1")
    assert read_item(SERVICE, "alice", paths=paths) == "pair-1"
    before = paths.get(SERVICE, "alice")

    other_process(keyring_env, "delete", "alice")
    assert read_item(SERVICE, "alice", paths=paths) is None
    other_process(keyring_env, "set", "alice", "pair-2")

    assert read_item(SERVICE, "alice", paths=paths) == "pair-2"
    assert paths.get(SERVICE, "alice") not in (None, before)


def test_a_path_of_another_item_is_not_trusted(keyring_env: KeyringSession) -> None:
    """A remembered path that now names another account's item is dropped, not read."""
    paths = ItemPaths()
    other_process(keyring_env, "set", "alice", "alice-pair")
    other_process(keyring_env, "set", "bob", "bob-pair")
    read_item(SERVICE, "bob", paths=paths)
    bob = paths.get(SERVICE, "bob")
    assert bob is not None
    paths.remember(SERVICE, "alice", bob)  # as if alice's path had been given to bob's item

    assert read_item(SERVICE, "alice", paths=paths) == "alice-pair"
    assert paths.get(SERVICE, "alice") != bob


def test_our_own_write_is_read_back_by_search(keyring_env: KeyringSession) -> None:
    """A write forgets the path, so the read-back that verifies it searches the keyring."""
    paths = ItemPaths()
    write_item(SERVICE, "alice", "pair-1", paths=paths)
    assert read_item(SERVICE, "alice", paths=paths) == "pair-1"
    write_item(SERVICE, "alice", "pair-2", paths=paths)
    assert paths.get(SERVICE, "alice") is None

    assert read_item(SERVICE, "alice", paths=paths) == "pair-2"
    assert other_process(keyring_env, "get", "alice") == "pair-2"


def test_an_account_with_two_items_is_searched_every_time(keyring_env: KeyringSession) -> None:
    """Two items match (secret-tool's attributes differ from keyring's): never remembered,
    and every read answers what keyring's backend answers."""
    paths = ItemPaths()
    # secret-tool's item first: its attributes lack keyring's "application", so keyring's
    # write (replace matches items that carry all of its attributes) adds a second item.
    subprocess.run(
        ["secret-tool", "store", "--label=other", "service", SERVICE, "username", "alice"],
        input=b"secret-tool-item",
        env=keyring_env.env,
        check=True,
        timeout=60,
    )
    other_process(keyring_env, "set", "alice", "keyring-item")
    other_process(keyring_env, "set", "bob", "bob-pair")
    assert read_item(SERVICE, "bob", paths=paths) == "bob-pair"  # lists the service once

    found = subprocess.run(
        ["secret-tool", "search", "--all", "service", SERVICE, "username", "alice"],
        env=keyring_env.env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert found.count("[/") == 2  # the premise: two items match

    first = read_item(SERVICE, "alice", paths=paths)

    assert paths.primed(SERVICE)
    assert paths.get(SERVICE, "alice") is None
    assert first == other_process(keyring_env, "get", "alice")
