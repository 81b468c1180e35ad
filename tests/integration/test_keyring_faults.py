"""Keyring faults with the real command and the real gnome-keyring: the daemon degrades and
recovers by itself; damaged, foreign and newer items are reported and left alone."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.integration.test_daemon import DAEMON_CONFIG, Daemon
from tests.support.harness import Harness, wait_until


def test_daemon_survives_a_locked_keyring_and_recovers_on_unlock(
    harness: Harness, tmp_path: Path
) -> None:
    """Started locked: READY with a degraded status, no exit; after unlock it refreshes."""
    harness.extra_config = DAEMON_CONFIG
    harness.write_config()
    harness.seed(age=0.9 * 604800)
    harness.keyring.lock()
    daemon = Daemon(harness, tmp_path)
    ready = daemon.receive_until("READY=1")

    assert "keyring locked or unavailable" in ready
    assert daemon.process.poll() is None
    harness.keyring.unlock()
    wait_until(
        lambda: harness.emulator.counters()["refresh_success"] >= 1,
        timeout=60,
        what="a refresh after the unlock",
    )
    run = daemon.stop()
    assert run.code == 0
    assert "daemon.retry_planned" in run.err


def test_newer_version_item_is_left_alone(harness: Harness) -> None:
    """An item written by a newer version: exit 1, 'upgrade', untouched."""
    item = json.dumps({"format": "tvmaniac-refreshd/tokens", "version": 2})
    harness.put_item("default", item)
    run = harness.run("token")

    assert run.code == 1
    assert "upgrade" in run.err
    assert harness.keyring.lookup("tvmaniac-refreshd", "default") == item


def test_foreign_json_item_is_left_alone(harness: Harness) -> None:
    """JSON that another program stored under our service name is never overwritten."""
    item = json.dumps({"token": "something-else"})
    harness.put_item("default", item)
    run = harness.run("refresh", "--force")

    assert run.code == 1
    assert "another program" in run.err
    assert harness.keyring.lookup("tvmaniac-refreshd", "default") == item
    assert harness.run("login").code == 1


def python_output(harness: Harness, script: str) -> str:
    """Run ``script`` with the harness's keyring and return its stdout."""
    return subprocess.run(
        [sys.executable, "-c", script],
        env=harness.env(),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout


def test_direct_read_matches_keyring(harness: Harness) -> None:
    """The direct read (jeepney, plain session) returns exactly what keyring's backend returns."""
    harness.put_item("default", "value-\N{SNOWMAN}-" + "x" * 3000)
    script = (
        "from keyring.backends import SecretService\n"
        "from tvmaniac_refreshd.storage.secret_service import read_item\n"
        "a = read_item('tvmaniac-refreshd', 'default')\n"
        "b = SecretService.Keyring().get_password('tvmaniac-refreshd', 'default')\n"
        "c = read_item('tvmaniac-refreshd', 'nobody')\n"
        "print(a == b, len(a), c)\n"
    )
    output = python_output(harness, script)

    assert output.split() == ["True", str(len("value-\N{SNOWMAN}-") + 3000), "None"]


def test_direct_read_hands_a_locked_collection_to_keyring(harness: Harness) -> None:
    """Locked, the direct read neither prompts nor says "no item": keyring decides."""
    harness.put_item("default", "value")
    script = (
        "from tvmaniac_refreshd.storage.secret_service import Unsure, read_item\n"
        "for name in ('default', 'nobody'):\n"
        "    try:\n"
        "        print(read_item('tvmaniac-refreshd', name, timeout=5))\n"
        "    except Unsure:\n"
        "        print('unsure')\n"
    )
    harness.keyring.lock()
    try:
        output = python_output(harness, script)
    finally:
        harness.keyring.unlock()

    assert output.split() == ["unsure", "unsure"]


def test_direct_write_and_delete_are_keyrings_items(harness: Harness) -> None:
    """Items written directly are the ones keyring writes: one per account, same label."""
    script = (
        "from contextlib import closing\n"
        "import secretstorage\n"
        "from keyring.backends import SecretService\n"
        "from tvmaniac_refreshd.storage.secret_service import delete_item, write_item\n"
        "k = SecretService.Keyring()\n"
        "def items():\n"
        "    with closing(secretstorage.dbus_init()) as bus:\n"
        "        found = secretstorage.get_default_collection(bus).search_items(\n"
        "            {'service': 'tvmaniac-refreshd', 'username': 'default'})\n"
        # gnome-keyring adds its own xdg:schema to some items a moment after writing them.
        "        return [(i.get_label(), sorted((k, v) for k, v in i.get_attributes().items()\n"
        "                                       if k != 'xdg:schema')) for i in found]\n"
        "write_item('tvmaniac-refreshd', 'default', 'v1-\\N{SNOWMAN}')\n"
        "print(k.get_password('tvmaniac-refreshd', 'default') == 'v1-\\N{SNOWMAN}')\n"
        "direct = items()\n"
        "k.set_password('tvmaniac-refreshd', 'default', 'v2')\n"
        "print(items() == direct, len(direct))\n"
        "write_item('tvmaniac-refreshd', 'default', 'v3')\n"
        "print(k.get_password('tvmaniac-refreshd', 'default'), len(items()))\n"
        "delete_item('tvmaniac-refreshd', 'default')\n"
        "print(k.get_password('tvmaniac-refreshd', 'default'), len(items()))\n"
    )
    output = python_output(harness, script)

    assert output.split() == ["True", "True", "1", "v3", "1", "None", "0"]
