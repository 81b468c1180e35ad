"""The quick `token` path against the real keyring and emulator: fast only while it is right."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.harness import Harness

WEEK = 604_800
# Loads the command as the console script does and reports which of our modules it imported.
PROBE = (
    "import sys\n"
    "from tvmaniac_refreshd.entry import main\n"
    "code = main()\n"
    "loaded = sorted(m for m in sys.modules if m.startswith('tvmaniac_refreshd.'))\n"
    "sys.stderr.write(' '.join(loaded))\n"
    "sys.exit(code)\n"
)


def record_path(harness: Harness) -> Path:
    return harness.state_dir / "_quick-token.json"


def probe(harness: Harness, *args: str) -> tuple[int, str, set[str]]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        env=harness.env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return result.returncode, result.stdout, set(result.stderr.split())


def token_requests(harness: Harness) -> int:
    return len(harness.emulator.requests("/oauth/token"))


def stored_access_token(harness: Harness) -> str:
    stored = harness.stored()
    assert stored is not None
    return str(stored["access_token"])


def test_a_second_token_call_loads_neither_the_config_nor_the_cli(harness: Harness) -> None:
    grant = harness.seed(age=3600)

    first = harness.run("token")
    code, out, loaded = probe(harness, "token")

    assert first.code == 0
    assert first.out == out == f"{grant['access_token']}\n"
    assert code == 0
    assert "tvmaniac_refreshd.quick_token" in loaded
    assert not loaded & {"tvmaniac_refreshd.cli.parser", "tvmaniac_refreshd.config.settings"}, (
        loaded
    )
    assert token_requests(harness) == 0
    assert (record_path(harness)).exists()


def test_the_first_call_goes_the_full_way(harness: Harness) -> None:
    harness.seed(age=3600)

    code, _, loaded = probe(harness, "token")

    assert code == 0
    assert "tvmaniac_refreshd.cli.parser" in loaded


def test_after_a_refresh_token_prints_the_new_token(harness: Harness) -> None:
    grant = harness.seed(age=3600)
    assert harness.run("token").out == f"{grant['access_token']}\n"

    assert harness.run("refresh", "--force").code == 0
    run = harness.run("token")

    assert run.code == 0
    assert run.out == f"{stored_access_token(harness)}\n"
    assert run.out != f"{grant['access_token']}\n"
    assert probe(harness, "token")[1] == run.out


def test_a_config_edit_that_makes_the_token_due_is_obeyed_at_once(harness: Harness) -> None:
    grant = harness.seed(age=2 * 86_400)  # 5 of 7 days left: not due at 25 %
    assert harness.run("token").out == f"{grant['access_token']}\n"
    assert token_requests(harness) == 0

    harness.extra_config = '[refresh]\nthreshold = "90%"\n'
    harness.write_config()
    run = harness.run("token")

    assert run.code == 0
    assert token_requests(harness) == 1
    assert run.out == f"{stored_access_token(harness)}\n" != f"{grant['access_token']}\n"


def test_a_token_falling_due_is_refreshed_not_served_from_the_record(harness: Harness) -> None:
    # A 100-second token with 30 seconds left is due (the margin takes half its lifetime);
    # record it anyway with --min-valid, which only asks for 10 seconds.
    grant = harness.seed(age=70, expires_in=100)
    assert harness.run("token", "--min-valid", "10s").out == f"{grant['access_token']}\n"
    assert token_requests(harness) == 0

    run = harness.run("token")

    assert run.code == 0
    assert token_requests(harness) == 1
    assert run.out == f"{stored_access_token(harness)}\n"


def test_a_rejection_after_the_record_stops_token(harness: Harness) -> None:
    harness.seed(age=3600)
    assert harness.run("token").code == 0
    harness.emulator.revoke_grant("alice")

    assert harness.run("refresh", "--force").code == 77
    run = harness.run("token")

    assert (run.code, run.out) == (77, "")
    assert "login" in run.err


def test_logout_after_the_record(harness: Harness) -> None:
    harness.seed(age=3600)
    assert harness.run("token").code == 0
    assert harness.run("logout").code == 0

    run = harness.run("token")

    assert (run.code, run.out) == (77, "")
    assert "not logged in" in run.err


def test_a_locked_keyring_after_the_record(harness: Harness) -> None:
    harness.seed(age=3600)
    assert harness.run("token").code == 0
    harness.keyring.lock()
    try:
        run = harness.run("token")
    finally:
        harness.keyring.unlock()

    assert (run.code, run.out) == (69, "")
    assert "locked" in run.err


def test_no_record_while_the_config_warns(harness: Harness) -> None:
    harness.seed(age=3600)
    harness.config_path.chmod(0o644)  # a client secret in a world-readable file: a warning

    run = harness.run("token")

    assert run.code == 0
    assert "warning" in run.err
    assert not (record_path(harness)).exists()
    assert "warning" in harness.run("token").err


def test_the_record_names_the_config_and_no_secret(harness: Harness) -> None:
    grant = harness.seed(age=3600)
    assert harness.run("token").code == 0

    text = (record_path(harness)).read_text()
    record = json.loads(text)

    assert record["default_account"] == "default"
    assert str(harness.config_path) in record["config"]
    assert str(grant["access_token"]) not in text
    assert str(grant["refresh_token"]) not in text
