#!/usr/bin/env python3
"""An offline cache of your Trakt data, run as a tvmaniac-refreshd job.

It keeps your watchlist and your watched shows' progress, and from the progress the "up next"
list (the next episode of each show you are watching), in one JSON file written atomically.
It is incremental: each run reads GET /sync/last_activities first and fetches a category only
when its timestamp moved, so a run with nothing new makes exactly one request.

It follows Trakt's rules (shared/reference/trakt-sync.md): the required headers, pagination
(limit 250, every page up to X-Pagination-Page-Count), and rate limits (a 429's Retry-After).
The exit code is what the job runner understands: 0 done, 75 try again later (network, 429,
5xx), 77 the token was refused (log in again). Standard library only; the token comes from
$ACCESS_TOKEN (the job's ``env``), never from the command line.

    [jobs.trakt-cache]
    command = ["python3", "/path/to/trakt_offline_cache.py", "--client-id", "YOUR_CLIENT_ID",
               "--cache", "/home/you/.cache/trakt-offline.json"]
    every = "1h"
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_TEMPORARY, EXIT_REAUTH, EXIT_USAGE = 0, 75, 77, 2
PAGE_LIMIT = 250  # Trakt clamps every limit to 250 (2026)
# A 429 asking for at most this long is waited out once; a longer one ends the run with 75,
# and the job runner's backoff takes over.
SHORT_WAIT = 10
CACHE_VERSION = 1
USER_AGENT = "tvmaniac-refreshd-offline-cache/1.0"


class Temporary(Exception):
    """Try again later (exit 75)."""


class Refused(Exception):
    """The token was refused (exit 77)."""


class Trakt:
    """GETs against Trakt's API with its headers; counts the requests it makes."""

    def __init__(self, api_url: str, client_id: str, token: str, timeout: float = 30) -> None:
        self.api_url = api_url.rstrip("/")
        self.headers = {
            "Content-Type": "application/json",
            "trakt-api-key": client_id,
            "trakt-api-version": "2",
            "User-Agent": USER_AGENT,
            "Authorization": f"Bearer {token}",
        }
        self.timeout = timeout
        self.requests = 0

    def get(self, path: str, **params: object) -> tuple[Any, dict[str, str]]:
        query = "&".join(f"{key}={value}" for key, value in params.items())
        url = f"{self.api_url}{path}" + (f"?{query}" if query else "")
        for attempt in range(2):
            self.requests += 1
            request = urllib.request.Request(url, headers=self.headers)  # noqa: S310
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                    headers = {name.lower(): value for name, value in response.headers.items()}
                    return json.loads(response.read() or b"null"), headers
            except urllib.error.HTTPError as error:
                if error.code == 429:
                    wait = _seconds(error.headers.get("Retry-After"))
                    if attempt == 0 and wait <= SHORT_WAIT:
                        time.sleep(wait)
                        continue
                    raise Temporary(f"rate limited on {path}; retry after {wait}s") from None
                if error.code in (401, 403, 423):
                    raise Refused(f"{path}: HTTP {error.code}") from None
                if error.code >= 500 or error.code in (408, 420):
                    raise Temporary(f"{path}: HTTP {error.code}") from None
                raise
            except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
                raise Temporary(f"{path}: {error}") from None
        raise Temporary(f"rate limited on {path}")

    def pages(self, path: str, **params: object) -> list[Any]:
        """Every item of a paginated list: page by page up to X-Pagination-Page-Count."""
        items: list[Any] = []
        page = 1
        while True:
            chunk, headers = self.get(path, page=page, limit=PAGE_LIMIT, **params)
            items.extend(chunk or [])
            if page >= int(headers.get("x-pagination-page-count", "1")):
                return items
            page += 1


def _seconds(value: str | None) -> int:
    try:
        return max(1, int(value or "1"))
    except ValueError:
        return 60


def moved(remote: dict[str, Any], cached: dict[str, Any], *keys: tuple[str, str]) -> bool:
    """Whether any of ``keys`` (category, key) of last_activities differs from the cache's."""
    return any(
        remote.get(category, {}).get(key) != cached.get(category, {}).get(key)
        for category, key in keys
    )


def sync(trakt: Trakt, cache: dict[str, Any]) -> dict[str, Any]:
    """Return the cache brought up to date; fetch only the categories that moved."""
    activities, _ = trakt.get("/sync/last_activities")
    old = cache.get("activities", {})
    new = dict(cache)
    if "watchlist" not in cache or moved(
        activities, old, ("watchlist", "updated_at"), ("shows", "watchlisted_at")
    ):
        new["watchlist"] = trakt.pages("/sync/watchlist/shows/rank/asc")
    if "watched" not in cache or moved(
        activities, old, ("episodes", "watched_at"), ("shows", "hidden_at"), ("shows", "dropped_at")
    ):
        watched = trakt.pages("/sync/watched/shows", extended="noseasons")
        progress = dict(cache.get("progress", {}))
        before = {str(item["show"]["ids"]["trakt"]): item for item in cache.get("watched", [])}
        for item in watched:
            show_id = str(item["show"]["ids"]["trakt"])
            seen = before.get(show_id)
            # last_updated_at moves when the show's plays change: fetch only those shows.
            if (
                show_id not in progress
                or seen is None
                or (seen.get("last_updated_at") != item.get("last_updated_at"))
            ):
                progress[show_id], _ = trakt.get(f"/shows/{show_id}/progress/watched")
        new["watched"] = watched
        new["progress"] = {key: progress[key] for key in progress if key in _ids(watched)}
    new["up_next"] = up_next(new.get("watched", []), new.get("progress", {}))
    new["activities"] = activities
    new["version"] = CACHE_VERSION
    return new


def _ids(watched: list[Any]) -> set[str]:
    return {str(item["show"]["ids"]["trakt"]) for item in watched}


def up_next(watched: list[Any], progress: dict[str, Any]) -> list[dict[str, Any]]:
    """The next episode of every watched show with one left, most recently watched first."""
    entries = []
    for item in watched:
        show_progress = progress.get(str(item["show"]["ids"]["trakt"]))
        if show_progress and show_progress.get("next_episode"):
            entries.append(
                {
                    "show": item["show"],
                    "next_episode": show_progress["next_episode"],
                    "last_watched_at": show_progress.get("last_watched_at"),
                }
            )
    entries.sort(key=lambda entry: entry["last_watched_at"] or "", reverse=True)
    return entries


def write_atomically(path: Path, data: dict[str, Any]) -> None:
    """A temporary file in the same directory, fsync, rename: the old or the new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=1, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--client-id", required=True, help="your Trakt app's client id")
    parser.add_argument("--cache", required=True, type=Path, help="the JSON file to keep")
    parser.add_argument("--api-url", default="https://api.trakt.tv")
    parser.add_argument("--token-env", default="ACCESS_TOKEN", help="the token's variable")
    args = parser.parse_args(argv)
    token = os.environ.get(args.token_env)
    if not token:
        print(f"${args.token_env} is not set: run me as a tvmaniac-refreshd job", file=sys.stderr)
        return EXIT_USAGE
    try:
        cache = json.loads(args.cache.read_text(encoding="utf-8"))
        if cache.get("version") != CACHE_VERSION:
            cache = {}
    except (OSError, ValueError):
        cache = {}
    trakt = Trakt(args.api_url, args.client_id, token)
    try:
        updated = sync(trakt, cache)
    except Temporary as error:
        print(f"not updated ({error}); the cache is unchanged", file=sys.stderr)
        return EXIT_TEMPORARY
    except Refused as error:
        print(f"the token was refused ({error}); log in again", file=sys.stderr)
        return EXIT_REAUTH
    if updated != cache:
        write_atomically(args.cache, updated)
    print(
        f"{len(updated.get('watchlist', []))} on the watchlist, "
        f"{len(updated['up_next'])} up next; {trakt.requests} requests"
    )
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
