"""The locked-keyring message: one short sentence, then the recipe that fits the machine."""

from __future__ import annotations

import pytest

from tvmaniac_refreshd.storage.unlock_advice import Machine, locked, no_answer


def lines(text: str) -> list[str]:
    return text.splitlines()


def test_a_desktop_gets_one_sentence() -> None:
    text = locked(Machine(headless=False))

    assert lines(text) == [text]
    assert "seahorse" in text
    assert "gnome-keyring-daemon" not in text
    assert "daemon" not in text.replace("gnome-keyring-daemon", "")


@pytest.mark.parametrize("systemd", [True, False])
def test_headless_gets_an_indented_recipe_for_its_service_manager(systemd: bool) -> None:
    text = locked(Machine(headless=True, systemd=systemd))
    first, *rest = lines(text)

    assert first == "the keyring is locked; unlock it from a shell (ssh is fine):"
    assert all(line.startswith("  ") for line in rest)
    assert max(len(line) for line in lines(text)) <= 90
    assert ("systemctl --user stop" in text) is systemd
    assert ("--replace" in text) is not systemd
    assert "daemon recovers" not in text


def test_a_running_daemon_is_said_to_recover() -> None:
    for headless in (True, False):
        text = locked(Machine(headless=headless, daemon_running=lambda: True))
        assert "the running daemon recovers by itself" in text


def test_no_answer_keeps_the_shape() -> None:
    text = no_answer(Machine(headless=True, systemd=False), seconds=10, what="reading")

    assert lines(text)[0].startswith("the keyring did not answer within 10s while reading")
    assert "    unset PW" in lines(text)
