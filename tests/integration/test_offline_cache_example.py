"""The shipped example (examples/trakt_offline_cache.py) as a job, through the real command,
a real keyring and the emulator's sync endpoints: incremental, paginated, rate-limit aware."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.support.harness import CLIENT_ID, REPO, Harness

EXAMPLE = REPO / "examples" / "trakt_offline_cache.py"


@pytest.fixture
def cache(harness: Harness, tmp_path: Path) -> Path:
    path = tmp_path / "cache" / "trakt.json"
    command = [sys.executable, str(EXAMPLE), "--client-id", CLIENT_ID]
    command += ["--cache", str(path), "--api-url", harness.emulator.url]
    harness.extra_config = (
        "[alerts]\ndesktop = false\n"
        f'[jobs.trakt-cache]\ncommand = {json.dumps(command)}\nevery = "1h"\ntimeout = "5m"\n'
    )
    harness.write_config()
    harness.seed()
    sync = harness.emulator.sync
    sync.add_show(1, "Breaking Bad", 2008, [(1, 1, "Pilot"), (1, 2, "Cat's in the Bag")])
    sync.add_show(2, "Severance", 2022, [(1, 1, "Good News"), (1, 2, "Half Loop")])
    for number in range(10, 270):  # more than one page of 250
        sync.add_show(number, f"Show {number}", 2020, [(1, 1, "One")])
        sync.add_to_watchlist("alice", number)
    sync.watch("alice", 1, 1, 1)
    sync.watch("alice", 2, 1, 1)
    return path


def api_requests(harness: Harness) -> list[str]:
    return [
        str(entry["path"])
        for entry in harness.emulator.requests()
        if str(entry["path"]).startswith(("/sync/", "/shows/"))
    ]


def test_first_run_fills_the_cache_and_derives_up_next(harness: Harness, cache: Path) -> None:
    run = harness.run("job", "run", "trakt-cache")

    assert run.code == 0, run.err
    data = json.loads(cache.read_text())
    assert len(data["watchlist"]) == 260  # both pages
    # Both were watched in the same minute: the order between them is not defined.
    titles = {entry["next_episode"]["title"] for entry in data["up_next"]}
    assert titles == {"Cat's in the Bag", "Half Loop"}
    paths = api_requests(harness)
    assert paths[0] == "/sync/last_activities"
    assert sum(path.startswith("/sync/watchlist") for path in paths) == 2  # pages 1 and 2


def test_second_run_with_nothing_changed_makes_exactly_one_request(
    harness: Harness, cache: Path
) -> None:
    assert harness.run("job", "run", "trakt-cache").code == 0
    before = len(api_requests(harness))
    written = cache.stat().st_mtime_ns
    run = harness.run("job", "run", "trakt-cache")

    assert run.code == 0, run.err
    assert api_requests(harness)[before:] == ["/sync/last_activities"]
    assert cache.stat().st_mtime_ns == written  # nothing new: the file is not rewritten


def test_a_new_play_fetches_only_what_moved(harness: Harness, cache: Path) -> None:
    assert harness.run("job", "run", "trakt-cache").code == 0
    before = len(api_requests(harness))
    harness.emulator.sync.watch("alice", 2, 1, 2)  # Severance is done
    assert harness.run("job", "run", "trakt-cache").code == 0

    new = [path.split("?")[0] for path in api_requests(harness)[before:]]
    assert new == ["/sync/last_activities", "/sync/watched/shows", "/shows/2/progress/watched"]
    data = json.loads(cache.read_text())
    assert [entry["show"]["title"] for entry in data["up_next"]] == ["Breaking Bad"]


def test_rate_limited_run_exits_75_and_keeps_the_cache(harness: Harness, cache: Path) -> None:
    assert harness.run("job", "run", "trakt-cache").code == 0
    kept = cache.read_text()
    harness.emulator.sync.set_rate_limit(len(api_requests(harness)))  # the budget is spent
    run = harness.run("job", "run", "trakt-cache")

    assert run.code == 75
    assert "rate limited" in run.err
    assert cache.read_text() == kept
    listed = json.loads(harness.run("job", "list", "--json").out)["jobs"][0]
    assert listed["last_result"] == "retry"
