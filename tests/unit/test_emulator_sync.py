"""The emulator's sync endpoints, against shared/reference/trakt-sync.md: last_activities, the
paginated watchlist, watched shows, a show's progress, and the GET rate limit's 429."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from trakt_emulator import Emulator

CLIENT_ID = "sync-client"
UA = {"User-Agent": "tvmaniac-refreshd-tests/1.0"}


class Clock:
    def __init__(self) -> None:
        self.now = 1_780_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def emu(clock: Clock) -> Iterator[Emulator]:
    emulator = Emulator(CLIENT_ID, "secret", clock=clock).start()
    emulator.sync.add_show(1, "Breaking Bad", 2008, [(1, 1, "Pilot"), (1, 2, "Cat's in the Bag")])
    emulator.sync.add_show(2, "Severance", 2022, [(1, 1, "Good News"), (2, 1, "Hello")])
    yield emulator
    emulator.stop()


@pytest.fixture
def api(emu: Emulator) -> Iterator[httpx.Client]:
    token = str(emu.seed_grant("alice")["access_token"])
    headers = {
        **UA,
        "Authorization": f"Bearer {token}",
        "trakt-api-key": CLIENT_ID,
        "trakt-api-version": "2",
        "Content-Type": "application/json",
    }
    with httpx.Client(base_url=emu.url, headers=headers, timeout=10) as http:
        yield http


def test_every_route_wants_the_key_and_a_valid_token(emu: Emulator, api: httpx.Client) -> None:
    assert api.get("/sync/last_activities", headers={"trakt-api-key": "other"}).status_code == 403
    bad = api.get("/sync/watchlist", headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401
    assert "invalid_token" in bad.headers["WWW-Authenticate"]
    assert api.post("/sync/last_activities").status_code == 405
    emu.lock_user("alice")
    assert api.get("/sync/watched/shows").status_code == 423


def test_last_activities_has_every_category_and_all_is_the_newest(
    emu: Emulator, api: httpx.Client, clock: Clock
) -> None:
    before = api.get("/sync/last_activities").json()
    assert set(before) == {
        "all", "movies", "episodes", "shows", "seasons", "comments", "lists", "watchlist",
        "favorites", "collaborations", "account", "saved_filters", "notes",
    }  # fmt: skip
    assert "dropped_at" in before["shows"]
    clock.now += 3600
    emu.sync.add_to_watchlist("alice", 2)
    after = api.get("/sync/last_activities").json()
    assert after["watchlist"]["updated_at"] > before["watchlist"]["updated_at"]
    assert after["shows"]["watchlisted_at"] == after["watchlist"]["updated_at"] == after["all"]
    assert after["episodes"]["watched_at"] == before["episodes"]["watched_at"]
    assert after["all"].endswith("Z")


def test_watchlist_is_paginated_with_the_four_headers_and_a_clamped_limit(
    emu: Emulator, api: httpx.Client
) -> None:
    for number in range(3, 263):
        emu.sync.add_show(number, f"Show {number}", 2020, [(1, 1, "One")])
        emu.sync.add_to_watchlist("alice", number)
    first = api.get("/sync/watchlist/shows/rank/asc", params={"limit": 1000})
    assert first.status_code == 200
    assert first.headers["X-Pagination-Limit"] == "250"  # clamped, not refused
    assert first.headers["X-Pagination-Page-Count"] == "2"
    assert first.headers["X-Pagination-Item-Count"] == "260"
    assert first.headers["X-Pagination-Page"] == "1"
    assert first.headers["X-Applied-Sort-By"] == first.headers["X-Sort-By"] == "rank"
    assert len(first.json()) == 250
    second = api.get("/sync/watchlist/shows/rank/asc", params={"limit": 250, "page": 2})
    assert len(second.json()) == 10
    default = api.get("/sync/watchlist")
    assert default.headers["X-Pagination-Limit"] == "100"
    item = first.json()[0]
    assert set(item) == {"rank", "id", "listed_at", "notes", "type", "show"}
    assert item["show"]["ids"]["slug"] == "show-3"
    assert api.get("/sync/watchlist/movies").json() == []


def test_watched_shows_carry_seasons_only_with_extended_progress(
    emu: Emulator, api: httpx.Client
) -> None:
    emu.sync.watch("alice", 1, 1, 1)
    plain = api.get("/sync/watched/shows").json()
    assert plain[0]["show"]["title"] == "Breaking Bad"
    assert "seasons" not in plain[0]
    with_progress = api.get("/sync/watched/shows", params={"extended": "progress", "limit": 250})
    assert with_progress.headers["X-Pagination-Limit"] == "100"
    assert with_progress.json()[0]["seasons"][0]["episodes"][0]["number"] == 1


def test_progress_names_the_next_episode_and_null_when_done(
    emu: Emulator, api: httpx.Client
) -> None:
    emu.sync.add_to_watchlist("alice", 1)
    emu.sync.watch("alice", 1, 1, 1)
    assert api.get("/sync/watchlist").json() == []  # watching a show takes it off (§2)
    progress = api.get("/shows/1/progress/watched").json()
    assert (progress["aired"], progress["completed"]) == (2, 1)
    assert progress["next_episode"]["title"] == "Cat's in the Bag"
    assert progress["last_episode"]["number"] == 1
    emu.sync.watch("alice", 1, 1, 2)
    assert api.get("/shows/breaking-bad/progress/watched").json()["next_episode"] is None
    assert api.get("/shows/999/progress/watched").status_code == 404


def test_too_many_gets_is_429_with_retry_after_and_x_ratelimit(
    emu: Emulator, api: httpx.Client, clock: Clock
) -> None:
    emu.sync.set_rate_limit(2)
    assert api.get("/sync/last_activities").status_code == 200
    assert api.get("/sync/last_activities").status_code == 200
    limited = api.get("/sync/last_activities")
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "300"
    info = json.loads(limited.headers["X-Ratelimit"])
    assert (info["name"], info["limit"], info["remaining"]) == ("AUTHED_API_GET_LIMIT", 2, 0)
    clock.now += 301
    assert api.get("/sync/last_activities").status_code == 200
