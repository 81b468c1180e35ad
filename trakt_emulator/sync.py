"""Trakt's sync endpoints for an offline cache (shared/reference/trakt-sync.md §1-3, 5, 6):
last_activities, the watchlist, watched shows, a show's watched progress, and the per-user GET
rate limit with its 429. Every route wants the API key (403), a valid bearer token (401), an
unlocked user (423); lists are paginated as in 2026 (default 100, clamped to 250).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qs

from trakt_emulator.replies import Reply, empty_reply, json_reply
from trakt_emulator.state import State

NEVER = "2020-01-01T00:00:01.000Z"  # the placeholder Trakt's docs use for "no activity yet"
# §1: the categories and keys of GET /sync/last_activities (C, 2026).
ACTIVITY_KEYS: dict[str, tuple[str, ...]] = {
    "movies": (
        "watched_at",
        "collected_at",
        "rated_at",
        "watchlisted_at",
        "favorited_at",
        "commented_at",
        "paused_at",
        "hidden_at",
    ),
    "episodes": (
        "watched_at",
        "collected_at",
        "rated_at",
        "watchlisted_at",
        "commented_at",
        "paused_at",
    ),
    "shows": (
        "rated_at",
        "watchlisted_at",
        "favorited_at",
        "commented_at",
        "hidden_at",
        "dropped_at",
    ),
    "seasons": ("rated_at", "watchlisted_at", "commented_at", "hidden_at"),
    "comments": ("liked_at", "reacted_at", "blocked_at"),
    "lists": ("liked_at", "reacted_at", "updated_at", "commented_at"),
    "watchlist": ("updated_at",),
    "favorites": ("updated_at",),
    "collaborations": ("updated_at",),
    "account": ("settings_at", "followed_at", "following_at", "pending_at", "requested_at"),
    "saved_filters": ("updated_at",),
    "notes": ("updated_at",),
}
DEFAULT_LIMIT = 100
MAX_LIMIT = 250
MAX_PROGRESS_LIMIT = 100  # /sync/watched with extended=progress
WATCHLIST_TYPES = ("movies", "shows", "seasons", "episodes")
RATE_PERIOD = 300  # AUTHED_API_GET_LIMIT: 1000 GETs per 5 minutes per user
RATE_LIMIT = 1000


def iso(timestamp: float) -> str:
    """Trakt's timestamps: UTC, milliseconds, a Z; minute precision for what users set."""
    moment = dt.datetime.fromtimestamp(timestamp, tz=dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass
class Show:
    """A show of the emulator's catalogue; every episode listed has aired."""

    trakt: int
    title: str
    year: int
    episodes: list[tuple[int, int, str]]  # (season, number, title)

    @property
    def slug(self) -> str:
        return self.title.lower().replace(" ", "-")

    def ids(self) -> dict[str, object]:
        return {"trakt": self.trakt, "slug": self.slug, "tvdb": None, "imdb": None, "tmdb": None}

    def summary(self) -> dict[str, object]:
        return {"title": self.title, "year": self.year, "ids": self.ids()}

    def episode_ids(self, season: int, number: int) -> dict[str, object]:
        return {"trakt": self.trakt * 10000 + season * 100 + number, "tvdb": None, "imdb": None}


def _no_activity() -> dict[str, dict[str, str]]:
    return {category: dict.fromkeys(keys, NEVER) for category, keys in ACTIVITY_KEYS.items()}


@dataclass
class Library:
    """One user's data: activities, watchlist, plays."""

    activities: dict[str, dict[str, str]] = field(
        default_factory=lambda: {
            cat: dict.fromkeys(keys, NEVER) for cat, keys in ACTIVITY_KEYS.items()
        }
    )
    watchlist: list[dict[str, object]] = field(default_factory=list)
    plays: dict[int, dict[tuple[int, int], str]] = field(default_factory=dict)  # show -> ep -> at
    # When each show's plays last changed, to the millisecond (plays are minute-precision).
    updated: dict[int, str] = field(default_factory=dict)
    gets: list[float] = field(default_factory=list)  # times of recent GETs, for the rate limit


class SyncApp:
    """The sync routes; the emulator's hooks change the libraries (``add_to_watchlist``...)."""

    def __init__(self, state: State, clock: Callable[[], float]) -> None:
        self._state = state
        self._clock = clock
        self._lock = threading.Lock()
        self.shows: dict[int, Show] = {}
        self.libraries: dict[str, Library] = {}
        self.rate_limit = RATE_LIMIT

    # -- hooks -----------------------------------------------------------------------

    def add_show(
        self, trakt: int, title: str, year: int, episodes: list[tuple[int, int, str]]
    ) -> None:
        with self._lock:
            self.shows[trakt] = Show(trakt, title, year, list(episodes))

    def add_to_watchlist(self, user: str, trakt: int) -> None:
        """Put a show on ``user``'s watchlist; its activities move, as Trakt's do."""
        with self._lock:
            library = self._library(user)
            show = self.shows[trakt]
            now = self._clock()
            library.watchlist.append(
                {
                    "rank": len(library.watchlist) + 1,
                    "id": 100 + len(library.watchlist) + 1,
                    "listed_at": iso(now),
                    "notes": None,
                    "type": "show",
                    "show": show.summary(),
                }
            )
            library.activities["shows"]["watchlisted_at"] = iso(now)
            library.activities["watchlist"]["updated_at"] = iso(now)

    def watch(self, user: str, trakt: int, season: int, number: int) -> None:
        """Record a play of one episode; watching a show takes it off the watchlist (§2)."""
        with self._lock:
            library = self._library(user)
            now = self._clock()
            library.plays.setdefault(trakt, {})[(season, number)] = iso(now - now % 60)
            library.updated[trakt] = iso(now)
            library.activities["episodes"]["watched_at"] = iso(now)
            before = len(library.watchlist)
            library.watchlist = [
                item
                for item in library.watchlist
                if not (item["type"] == "show" and _trakt_of(item) == trakt)
            ]
            if len(library.watchlist) != before:
                library.activities["shows"]["watchlisted_at"] = iso(now)
                library.activities["watchlist"]["updated_at"] = iso(now)

    def set_rate_limit(self, limit: int) -> None:
        """How many GETs a user may make per 5 minutes (Trakt's is 1000)."""
        self.rate_limit = limit

    def _library(self, user: str) -> Library:
        return self.libraries.setdefault(user, Library())

    # -- routes ----------------------------------------------------------------------

    def handles(self, path: str) -> bool:
        return path.startswith("/sync/") or (
            path.startswith("/shows/") and path.endswith("/progress/watched")
        )

    def handle(self, method: str, path: str, headers: Mapping[str, str], query: str) -> Reply:
        if method != "GET":
            return empty_reply(405, (("Allow", "GET"),))
        if not self._state.known_client(headers.get("trakt-api-key")):
            return empty_reply(403)
        scheme, _, token = headers.get("authorization", "").partition(" ")
        user = self._state.access_user(token.strip()) if scheme.lower() == "bearer" else None
        if user is None:
            return empty_reply(
                401,
                (
                    (
                        "WWW-Authenticate",
                        'Bearer realm="Trakt", error="invalid_token", '
                        'error_description="The access token is invalid"',
                    ),
                ),
            )
        if self._state.is_locked(user):
            return empty_reply(
                423, (("X-Account-Locked", "true"), ("X-Account-Deactivated", "false"))
            )
        params = {key: values[-1] for key, values in parse_qs(query).items()}
        with self._lock:
            limited = self._rate_limited(user)
            if limited is not None:
                return limited
            return self._route(user, path, params)

    def _rate_limited(self, user: str) -> Reply | None:
        now = self._clock()
        library = self._library(user)
        library.gets = [at for at in library.gets if at > now - RATE_PERIOD]
        if len(library.gets) < self.rate_limit:
            library.gets.append(now)
            return None
        until = library.gets[0] + RATE_PERIOD
        retry_after = max(1, math.ceil(until - now))
        info = {
            "name": "AUTHED_API_GET_LIMIT",
            "period": RATE_PERIOD,
            "limit": self.rate_limit,
            "remaining": 0,
            "until": iso(until),
        }
        return json_reply(
            429,
            {"error": "rate_limit_exceeded"},
            (("Retry-After", str(retry_after)), ("X-Ratelimit", json.dumps(info))),
        )

    def _route(self, user: str, path: str, params: dict[str, str]) -> Reply:
        library = self._library(user)
        parts = path.strip("/").split("/")
        if parts == ["sync", "last_activities"]:
            return json_reply(200, self._activities(library))
        if parts[:2] == ["sync", "watchlist"] and len(parts) <= 5:
            return self._watchlist(library, parts[2:], params)
        if parts == ["sync", "watched", "shows"]:
            return self._watched(library, params)
        if parts == ["sync", "watched", "movies"]:
            return _page([], params, DEFAULT_LIMIT, MAX_LIMIT)
        if len(parts) == 4 and parts[0] == "shows" and parts[2:] == ["progress", "watched"]:
            return self._progress(library, parts[1])
        return empty_reply(404)

    @staticmethod
    def _activities(library: Library) -> dict[str, object]:
        stamps = [value for keys in library.activities.values() for value in keys.values()]
        return {"all": max(stamps), **{cat: dict(keys) for cat, keys in library.activities.items()}}

    def _watchlist(self, library: Library, rest: list[str], params: dict[str, str]) -> Reply:
        items = list(library.watchlist)
        if rest:
            kind = rest[0]
            if kind not in WATCHLIST_TYPES:
                return empty_reply(404)
            items = [item for item in items if f"{item['type']}s" == kind]
        sort_by = rest[1] if len(rest) > 1 else "rank"
        sort_how = rest[2] if len(rest) > 2 else "asc"
        if sort_how not in ("asc", "desc"):
            return empty_reply(400)
        if sort_by == "added":
            items.sort(key=lambda item: str(item["listed_at"]))
        else:
            sort_by = "rank"  # the others (and VIP-only ones) fall back to rank here
            items.sort(key=lambda item: int(str(item["rank"])))
        if sort_how == "desc":
            items.reverse()
        sort = (
            ("X-Sort-By", sort_by),
            ("X-Sort-How", sort_how),
            ("X-Applied-Sort-By", sort_by),
            ("X-Applied-Sort-How", sort_how),
        )
        return _page(items, params, DEFAULT_LIMIT, MAX_LIMIT, sort)

    def _watched(self, library: Library, params: dict[str, str]) -> Reply:
        progress = "progress" in params.get("extended", "").split(",")
        items: list[dict[str, object]] = []
        for trakt, plays in library.plays.items():
            show = self.shows[trakt]
            last = max(plays.values())
            item: dict[str, object] = {
                "plays": len(plays),
                "last_watched_at": last,
                "last_updated_at": library.updated.get(trakt, last),
                "reset_at": None,
                "show": {**show.summary(), "aired_episodes": len(show.episodes)},
            }
            if progress:
                seasons: dict[int, list[dict[str, object]]] = {}
                for (season, number), at in sorted(plays.items()):
                    episode = {"number": number, "plays": 1, "last_watched_at": at}
                    seasons.setdefault(season, []).append(episode)
                item["seasons"] = [
                    {"number": number, "episodes": episodes}
                    for number, episodes in sorted(seasons.items())
                ]
            items.append(item)
        items.sort(key=lambda item: -int(str(item["plays"])))  # most plays first (A)
        cap = MAX_PROGRESS_LIMIT if progress else MAX_LIMIT
        return _page(items, params, DEFAULT_LIMIT, cap)

    def _progress(self, library: Library, show_id: str) -> Reply:
        show = next((s for s in self.shows.values() if show_id in (str(s.trakt), s.slug)), None)
        if show is None:
            return empty_reply(404)
        plays = library.plays.get(show.trakt, {})
        order = sorted(show.episodes)
        seasons: dict[int, list[dict[str, object]]] = {}
        for season, number, _title in order:
            watched = plays.get((season, number))
            seasons.setdefault(season, []).append(
                {"number": number, "completed": watched is not None, "last_watched_at": watched}
            )
        # last_activity=aired (the default): the next episode is the first unwatched one after
        # the last one watched, in airing order; null when nothing is left (§3b).
        watched_at = [index for index, (s, n, _t) in enumerate(order) if (s, n) in plays]
        last_index = watched_at[-1] if watched_at else None
        start = 0 if last_index is None else last_index + 1
        upcoming = [i for i in range(start, len(order)) if order[i][:2] not in plays]
        last_at = max(plays.values()) if plays else None

        def episode(index: int | None) -> dict[str, object] | None:
            if index is None:
                return None
            season, number, title = order[index]
            ids = show.episode_ids(season, number)
            return {"season": season, "number": number, "title": title, "ids": ids}

        return json_reply(
            200,
            {
                "aired": len(show.episodes),
                "completed": len(plays),
                "last_watched_at": last_at,
                "reset_at": None,
                "seasons": [
                    {
                        "number": number,
                        "aired": len(episodes),
                        "completed": sum(1 for e in episodes if e["completed"]),
                        "episodes": episodes,
                    }
                    for number, episodes in sorted(seasons.items())
                ],
                "hidden_seasons": [],
                "next_episode": episode(upcoming[0] if upcoming else None),
                "last_episode": episode(last_index),
            },
        )


def _trakt_of(item: Mapping[str, object]) -> int | None:
    show = item.get("show")
    if isinstance(show, dict):
        ids = show.get("ids")
        if isinstance(ids, dict) and isinstance(ids.get("trakt"), int):
            return int(ids["trakt"])
    return None


def _page(
    items: list[dict[str, object]],
    params: dict[str, str],
    default: int,
    cap: int,
    extra: tuple[tuple[str, str], ...] = (),
) -> Reply:
    """One page of ``items`` with the four X-Pagination headers; ``limit`` clamped, not refused."""
    try:
        page = max(1, int(params.get("page", "1")))
        limit = max(1, int(params.get("limit", str(default))))
    except ValueError:
        return empty_reply(400)
    limit = min(limit, cap)
    count = max(1, math.ceil(len(items) / limit))
    chunk = items[(page - 1) * limit : page * limit]
    headers = (
        ("X-Pagination-Page", str(page)),
        ("X-Pagination-Limit", str(limit)),
        ("X-Pagination-Page-Count", str(count)),
        ("X-Pagination-Item-Count", str(len(items))),
        *extra,
    )
    return json_reply(200, chunk, headers)
