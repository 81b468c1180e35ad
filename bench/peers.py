"""The Python Trakt libraries users pick instead, timed on the same jobs against the emulator.

pytrakt (what PlexTraktSync uses) and trakt.py both import a package named ``trakt``, so each
gets its own virtual environment under bench/results/. Neither has a keyring: each keeps its
tokens in a plain JSON file (pytrakt's ``~/.pytrakt.json`` layout; trakt.py leaves storage to the
application, so the bench uses the token response as JSON, as its examples do). Neither has a
lock, a scheduler or a daemon, so only the cold start, the refresh and the memory compare.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from bench.cold import command
from bench.common import REPO, WEEK, median, peak_rss_kib, rig, run_measured
from tests.support.harness import CLIENT_ID, CLIENT_SECRET

VENVS = REPO / "bench" / "results"
PEERS = {"pytrakt": "pytrakt", "trakt.py": "trakt.py"}

PYTRAKT_TOKEN = """
import sys, trakt.core as core
core.CONFIG_PATH = sys.argv[1]
core.BASE_URL = sys.argv[2] + "/"
print(core.api().auth.get_token()[1])
"""
PYTRAKT_REFRESH = """
import sys, trakt.core as core
core.CONFIG_PATH = sys.argv[1]
core.BASE_URL = sys.argv[2] + "/"
auth = core.api().auth
auth.config.load()
auth.refresh_token()  # what it does when the token is within 10 minutes of expiry
print(auth.config.OAUTH_TOKEN)
"""
TRAKTPY_TOKEN = """
import json, sys
from trakt import Trakt
Trakt.base_url = sys.argv[2]
with open(sys.argv[1]) as f:
    auth = json.load(f)
Trakt.configuration.defaults.client(id=auth["client_id"], secret=auth["client_secret"])
Trakt.configuration.defaults.oauth.from_response(auth, refresh=True)
print(auth["access_token"])
"""
TRAKTPY_REFRESH = """
import json, sys
from trakt import Trakt
Trakt.base_url = sys.argv[2]
with open(sys.argv[1]) as f:
    auth = json.load(f)
Trakt.configuration.defaults.client(id=auth["client_id"], secret=auth["client_secret"])
fresh = Trakt["oauth"].token_refresh(auth["refresh_token"], "urn:ietf:wg:oauth:2.0:oob")
auth.update(fresh)
with open(sys.argv[1], "w") as f:
    json.dump(auth, f)
print(auth["access_token"])
"""


def venv_python(peer: str) -> Path:
    """The peer's own venv, made and filled from PyPI on first use."""
    directory = VENVS / f"venv-{peer.replace('.', '')}"
    python = directory / "bin" / "python"
    if not python.exists():
        subprocess.run(["/usr/bin/python3", "-m", "venv", str(directory)], check=True)
        subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                PEERS[peer],
            ],
            check=True,
        )
    return python


def version(python: Path, peer: str) -> str:
    result = subprocess.run(
        [str(python), "-m", "pip", "show", PEERS[peer]], capture_output=True, text=True, check=True
    )
    return next(
        (
            line.split(":", 1)[1].strip()
            for line in result.stdout.splitlines()
            if line.startswith("Version:")
        ),
        "?",
    )


def token_file(path: Path, peer: str, grant: dict[str, object]) -> None:
    now = int(time.time())
    if peer == "pytrakt":
        data: dict[str, object] = {
            "APPLICATION_ID": None,
            "CLIENT_ID": CLIENT_ID,
            "CLIENT_SECRET": CLIENT_SECRET,
            "OAUTH_EXPIRES_AT": now + WEEK,
            "OAUTH_REFRESH": grant["refresh_token"],
            "OAUTH_TOKEN": grant["access_token"],
        }
    else:
        data = {
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "access_token": grant["access_token"],
            "refresh_token": grant["refresh_token"],
            "token_type": "bearer",
            "created_at": now,
            "expires_in": WEEK,
            "scope": "public",
        }
    path.write_text(json.dumps(data))
    path.chmod(0o600)


def measure(runs: int) -> dict[str, object]:
    scripts = {
        "pytrakt": (PYTRAKT_TOKEN, PYTRAKT_REFRESH),
        "trakt.py": (TRAKTPY_TOKEN, TRAKTPY_REFRESH),
    }
    results: dict[str, object] = {}
    with rig() as r:
        r.seed()
        # Our refresh and each peer's, one after the other in every round: a noisy neighbour
        # then slows all of them alike, which minutes apart it would not.
        side_by_side: dict[str, tuple[list[str], dict[str, str]]] = {
            "ours": ([*command(r), "refresh", "--force"], r.env)
        }
        for peer, (token_script, refresh_script) in scripts.items():
            python = venv_python(peer)
            path = r.root / f"{peer}.json"
            grant = r.emulator.seed_grant(peer, expires_in=WEEK)
            token_file(path, peer, grant)
            env = dict(r.env)
            env.pop("PYTHONPATH", None)
            token_runs = [
                run_measured([str(python), "-c", token_script, str(path), r.emulator.url], env)
                for _ in range(runs + 1)
            ][1:]
            if token_runs[0][2].strip() != grant["access_token"]:
                raise RuntimeError(f"{peer} printed another token")
            before = r.emulator.counters().get("refresh_success", 0)
            refresh_runs = [
                run_measured([str(python), "-c", refresh_script, str(path), r.emulator.url], env)
                for _ in range(runs + 1)
            ][1:]
            if r.emulator.counters().get("refresh_success", 0) - before != runs + 1:
                raise RuntimeError(f"{peer} did not refresh at the emulator")
            rss = [
                peak_rss_kib([str(python), "-c", token_script, str(path), r.emulator.url], env)
                for _ in range(3)
            ]
            side_by_side[peer] = (
                [str(python), "-c", refresh_script, str(path), r.emulator.url],
                env,
            )
            results[peer] = {
                "version": version(python, peer),
                "token_median_ms": round(median([run[0] for run in token_runs]) * 1000, 1),
                "refresh_median_ms": round(median([run[0] for run in refresh_runs]) * 1000, 1),
                "token_max_rss_mib": round(median(rss) / 1024, 1),
                "token_store": "plain JSON file (0600)",
            }
        rounds: dict[str, list[float]] = {name: [] for name in side_by_side}
        for round_ in range(runs + 1):
            for name, (argv, env) in side_by_side.items():
                seconds = run_measured(argv, env)[0]
                if round_:
                    rounds[name].append(seconds)
        results["refresh_side_by_side_ms"] = {
            name: round(median(values) * 1000, 1) for name, values in rounds.items()
        }
        results["python"] = sys.version.split()[0]
    return results
