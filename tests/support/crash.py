"""Crash and race experiments: the real command, killed with SIGKILL at random moments.

Shared by ``tests/reliability/`` (short runs in the suite) and ``bench/reliability.py``
(long runs). Each worker owns a whole world: its own gnome-keyring session, Trakt emulator and
harness root, so workers run in parallel threads without sharing an account, a lock or a bus.

A crash round: start ``refresh --force`` (or the daemon, ``run``) while the emulator delays
every token response by a random 0-300 ms, SIGKILL it after a random pause, wait until the
emulator has answered whatever the victim sent, then check the invariants (a valid keyring item,
no survivor, no lock held) and classify the round by what the next ``refresh --force`` says:

- ``ok``: it exits 0;
- ``lost_in_window``: the one irreducible window. The victim's request was answered 200 (the
  server rotated the token) but the new pair never reached the keyring; the next refresh must
  exit 77 with a message that says a refresh was interrupted;
- ``lost_other``: anything else, which is a bug.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import random
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

from tests.support.harness import CLIENT_ID, CLIENT_SECRET, Harness, Run
from tests.support.keyring_session import KeyringSession
from trakt_emulator import Emulator, EmulatorControl
from tvmaniac_refreshd.core.errors import RefreshdError, TransientError
from tvmaniac_refreshd.core.tokens import decode_document
from tvmaniac_refreshd.daemon import instance
from tvmaniac_refreshd.storage.layout import Layout
from tvmaniac_refreshd.storage.locks import account_lock

ACCOUNT = "default"
TOKEN_PATH = "/oauth/token"
# The emulator holds each token response this long (uniform), so kills land before, during
# and after the server's rotation.
DELAY_MAX = 0.3
# Each kill lands uniformly within the victim's expected life: the duration of the recent
# verifying `refresh --force` runs (the same command, undelayed; ~0.7 s on an idle 2-core VM,
# much more when the machine is busy) plus the longest delay, so that kills spread over start-up,
# the POST, the delay, the store and the exit whatever the load. This is the first guess.
FIRST_LIFE_GUESS = 0.8
# `run` lives longer: the start-up of `refresh`, then refreshes every 1-2.5 s.
DAEMON_EXTRA_LIFE = 2.5
# Access tokens of the daemon rounds: the shortest lifetime the product accepts.
DAEMON_TTL = 10
# The daemon rounds' emulator runs this far behind the wall clock, so each 10 s token it issues
# arrives 2.5-3.5 s old and falls due (at half its life, less jitter) 1-2.5 s later: the daemon
# refreshes every couple of seconds and a random kill often lands inside a refresh. (A lag that
# makes tokens due on arrival stops the daemon's refreshes altogether; see the report.)
DAEMON_CLOCK_LAG = 2.5
DAEMON_CONFIG = (
    '[daemon]\ntick = "1s"\n[retry]\ninitial = "1s"\nmaximum = "2s"\n[alerts]\ndesktop = false\n'
)
# Bounds on every wait; none is expected to be approached, each turns a hang into a finding.
REAP_TIMEOUT = 10.0
VERIFY_TIMEOUT = 60.0
QUIET_TIMEOUT = 15.0
LOCK_PROBE_TIMEOUT = 0.5

OUTCOMES = ("ok", "lost_in_window", "lost_other")


@dataclass(frozen=True)
class Round:
    """What one crash round did and found."""

    worker: int
    mode: str  # "refresh" or "daemon"
    kill_after: float  # seconds after the start
    window: float  # the kill moment was drawn from [0, window)
    killed: bool  # False if the process had already exited when the kill was due
    victim_code: int | None
    requests: int  # token requests the victim sent that reached the emulator
    rotated: int  # ... of which the emulator answered 200
    stored_spent: bool  # the keyring still holds a refresh token the victim got rotated
    verify_code: int | None
    verify_message: str
    outcome: str
    problems: tuple[str, ...] = ()


@dataclass
class Tally:
    """All rounds of one experiment, and its summary."""

    mode: str
    seed: int
    rounds: list[Round] = field(default_factory=list)
    seconds: float = 0.0
    leaks: list[str] = field(default_factory=list)
    stray_files: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, round_: Round) -> None:
        with self._lock:
            self.rounds.append(round_)

    @property
    def kills(self) -> int:
        with self._lock:
            return sum(1 for r in self.rounds if r.killed)

    def outcomes(self) -> dict[str, int]:
        """Rounds per outcome, every outcome present (killed rounds only)."""
        counted = collections.Counter(r.outcome for r in self.rounds if r.killed)
        return {name: counted[name] for name in OUTCOMES}

    def problems(self) -> list[str]:
        """Every invariant violation of every round, with the round it happened in."""
        return [
            f"worker {r.worker} round {i} ({r.mode}, kill at {r.kill_after:.3f}s): {problem}"
            for i, r in enumerate(self.rounds)
            for problem in r.problems
        ]

    def summary(self) -> dict[str, object]:
        """The published numbers."""
        outcomes = self.outcomes()
        kills = self.kills
        lost = outcomes["lost_in_window"] + outcomes["lost_other"]
        in_request = sum(1 for r in self.rounds if r.killed and r.requests)
        return {
            "experiment": f"crash-{self.mode}",
            "seed": self.seed,
            "rounds": len(self.rounds),
            "kills": kills,
            "exited_before_kill": len(self.rounds) - kills,
            "outcomes": outcomes,
            "lost_per_1000_kills": round(1000 * lost / kills, 1) if kills else None,
            "kills_after_a_token_request": in_request,
            "median_kill_window_s": round(statistics.median(r.window for r in self.rounds), 2)
            if self.rounds
            else None,
            "refreshes_rotated_by_victims": sum(r.rotated for r in self.rounds if r.killed),
            "problems": len(self.problems()),
            "leaks": len(self.leaks),
            "stray_files": len(self.stray_files),
            "seconds": round(self.seconds, 1),
        }

    def line(self) -> str:
        """The summary as one line, for the test's output."""
        s = self.summary()
        outcomes = " ".join(f"{k}={v}" for k, v in s["outcomes"].items())  # type: ignore[attr-defined]
        return (
            f"{s['experiment']}: rounds={s['rounds']} kills={s['kills']} "
            f"(+{s['exited_before_kill']} exited first) {outcomes} "
            f"lost/1000 kills={s['lost_per_1000_kills']} "
            f"kills after a token request={s['kills_after_a_token_request']} "
            f"(kill window 0-{s['median_kill_window_s']} s) "
            f"problems={s['problems']} leaks={s['leaks']} seed={s['seed']} in {s['seconds']} s"
        )


@contextlib.contextmanager
def world(
    root: Path,
    *,
    extra_config: str = "",
    clock: Callable[[], float] | None = None,
    store: str = "keyring",
) -> Iterator[Harness]:
    """A private keyring, an emulator and a harness rooted at ``root``, for one worker; the
    tokens in the keyring or (``store="file"``) in the file store."""
    with (
        KeyringSession() as keyring,
        Emulator(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, clock=clock) as emulator,
    ):
        # Long runs must not push the victims' requests out of the log before they are read.
        emulator.configure(request_log_limit=1_000_000)
        yield Harness(
            emulator=emulator, keyring=keyring, root=root, extra_config=extra_config, store=store
        )
        if emulator.errors:
            raise AssertionError(f"the emulator failed: {emulator.errors}")


def survivors(harness: Harness) -> list[int]:
    """PIDs of live processes started with this harness's config (none should outlive a round)."""
    needle = b"\0TVMANIAC_REFRESHD_CONFIG=" + os.fsencode(harness.config_path) + b"\0"
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = b"\0" + (entry / "environ").read_bytes()
        except OSError:  # gone already, or not ours
            continue
        if needle in environ:
            found.append(int(entry.name))
    return found


def wait_quiet(emulator: Emulator) -> None:
    """Return once every request that reached the emulator has been answered and logged.

    The victim is dead, but its request may still sit in the emulator (a delay fault, or not
    yet accepted). The server accepts connections in order, so once a control call over HTTP
    is answered every earlier connection has its own handler; then wait for none to be left.
    """
    EmulatorControl(emulator.url).health()
    deadline = time.monotonic() + QUIET_TIMEOUT
    while emulator.open_connections():
        if time.monotonic() > deadline:
            raise AssertionError("the emulator still serves a connection after the victim died")
        time.sleep(0.005)


class Worker:
    """Runs crash rounds in one world until the shared kill budget is spent."""

    def __init__(self, number: int, harness: Harness, rng: random.Random, mode: str) -> None:
        self.number = number
        self.harness = harness
        self.rng = rng
        self.mode = mode
        self.needs_seed = True
        self.verify_seconds: collections.deque[float] = collections.deque(maxlen=9)
        env = harness.env()
        layout = Layout.of(env)
        self.lock_dir = layout.locks
        self.daemon_lock = layout.daemon_pid(str(harness.config_path))

    def life(self) -> float:
        """How long the victim is expected to live if not killed (the kill window)."""
        undelayed = statistics.median(self.verify_seconds) if self.verify_seconds else None
        life = (undelayed or FIRST_LIFE_GUESS) + DELAY_MAX
        return life + DAEMON_EXTRA_LIFE if self.mode == "daemon" else life

    def seed(self) -> None:
        if self.mode == "daemon":
            # Due at once: the daemon's first act is a refresh.
            self.harness.seed(age=DAEMON_TTL - 2, expires_in=DAEMON_TTL)
        else:
            self.harness.seed()
        self.needs_seed = False

    def round(self) -> Round:
        """Start the victim, kill it at a random moment, check and classify."""
        harness, emulator = self.harness, self.harness.emulator
        if self.needs_seed:
            self.seed()
        emulator.clear_faults()
        emulator.add_fault(
            {
                "kind": "delay",
                "seconds": 0.0,
                "max_seconds": DELAY_MAX,
                "path": TOKEN_PATH,
                "count": 1_000_000,
            }
        )
        args = ("run",) if self.mode == "daemon" else ("refresh", "--force")
        window = self.life()
        kill_after = self.rng.uniform(0.0, window)
        began = time.time()
        process = harness.spawn(*args)
        # The experiment: a random moment in the victim's life, not time passing for a test.
        time.sleep(kill_after)
        killed = process.poll() is None
        if killed:
            process.send_signal(signal.SIGKILL)
        problems: list[str] = []
        victim_code: int | None
        try:
            victim_code = harness.finish(process, args, timeout=REAP_TIMEOUT).code
        except subprocess.TimeoutExpired:
            victim_code = None
            problems.append(f"the victim was not reaped within {REAP_TIMEOUT}s")
            process.kill()
            process.communicate()
        wait_quiet(emulator)
        emulator.clear_faults()
        problems += self.check_invariants()
        victim = [
            entry
            for entry in emulator.requests(TOKEN_PATH)
            if float(entry["wall_time"]) >= began  # type: ignore[arg-type]
        ]
        rotated = {
            str(entry["body"].get("refresh_token"))
            for entry in victim
            if entry["status"] == 200 and isinstance(entry["body"], dict)
        }
        stored = self.stored_refresh_token()
        stored_spent = stored is not None and stored in rotated
        verify_code: int | None = None
        message = ""
        if not killed:
            # Finished before its kill was due: not a kill, and no verification is needed.
            outcome = "exited"
            if victim_code != 0 or self.mode == "daemon":
                problems.append(f"the victim exited by itself with {victim_code}")
        else:
            verify = self.verify()
            if verify is None:
                problems.append(f"`refresh --force` did not finish within {VERIFY_TIMEOUT}s")
            else:
                verify_code, message = verify.code, last_line(verify.err)
            outcome = classify(verify, stored_spent=stored_spent)
            if outcome != "ok":
                self.needs_seed = True
            if outcome == "lost_other":
                problems.append(
                    f"lost_other: verify exit {verify_code}, "
                    f"stored token spent by the victim: {stored_spent}, message: {message!r}"
                )
        return Round(
            worker=self.number,
            mode=self.mode,
            kill_after=kill_after,
            window=window,
            killed=killed,
            victim_code=victim_code,
            requests=len(victim),
            rotated=len(rotated),
            stored_spent=stored_spent,
            verify_code=verify_code,
            verify_message=message,
            outcome=outcome,
            problems=tuple(problems),
        )

    def check_invariants(self) -> list[str]:
        """What must hold right after any kill: item intact, no survivor, no lock held."""
        problems = []
        alive = survivors(self.harness)
        if alive:
            problems.append(f"processes survived the kill: {alive}")
            for pid in alive:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        text = self.harness.item_text(ACCOUNT)
        if text is None:
            problems.append("the stored item is gone")
        elif text == "":
            problems.append("the token file is empty")
        else:
            try:
                decode_document(text, ACCOUNT)
            except RefreshdError as exc:
                problems.append(f"the stored item does not decode (truncated?): {exc}")
        try:
            with account_lock(self.lock_dir, ACCOUNT, timeout=LOCK_PROBE_TIMEOUT):
                pass
        except TransientError:
            problems.append("the account lock is still held")
        if instance.running_pid(self.daemon_lock) is not None:
            problems.append("the daemon's instance lock is still held")
        return problems

    def stored_refresh_token(self) -> str | None:
        text = self.harness.item_text(ACCOUNT)
        if text is None:
            return None
        try:
            return decode_document(text, ACCOUNT).tokens.refresh_token
        except RefreshdError:
            return None

    def verify(self) -> Run | None:
        """The next `refresh --force`, bounded: None if it hung."""
        began = time.monotonic()
        try:
            run = self.harness.run("refresh", "--force", timeout=VERIFY_TIMEOUT)
        except subprocess.TimeoutExpired:
            return None
        self.verify_seconds.append(time.monotonic() - began)
        return run

    def stray_files(self) -> list[str]:
        """Files a kill left behind in the state and lock directories (temporaries)."""
        roots = [self.harness.state_dir, self.harness.root / "runtime"]
        return sorted(
            str(path.relative_to(self.harness.root))
            for root in roots
            for path in root.rglob("*")
            if path.is_file() and path.name.endswith(".tmp")
        )


def classify(verify: Run | None, *, stored_spent: bool) -> str:
    """The round's outcome from the next `refresh --force` and what the emulator saw."""
    if verify is None:
        return "lost_other"
    if verify.code == 0 and not stored_spent:
        return "ok"
    if verify.code == 77 and "interrupted" in verify.err and stored_spent:
        return "lost_in_window"
    return "lost_other"


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def run_crash(
    *,
    kills: int,
    mode: str = "refresh",
    workers: int = 2,
    seed: int | None = None,
    root: Path | None = None,
    progress: Callable[[Tally], None] | None = None,
    store: str = "keyring",
) -> Tally:
    """Run crash rounds on ``workers`` parallel worlds until ``kills`` processes were killed,
    with the tokens in the keyring or (``store="file"``) in the file store."""
    if mode not in ("refresh", "daemon"):
        raise ValueError(f"mode must be refresh or daemon, not {mode!r}")
    # Randomness for the experiment, not for secrets; the seed is published for a re-run.
    seed = random.randrange(2**32) if seed is None else seed  # noqa: S311
    tally = Tally(mode=mode if store == "keyring" else f"{mode}-{store}", seed=seed)
    failures: list[BaseException] = []
    started = time.monotonic()

    def work(number: int, base: Path) -> None:
        extra = DAEMON_CONFIG if mode == "daemon" else ""
        # The daemon rounds' emulator lags behind, so that every token is due soon after issue.
        clock = (lambda: time.time() - DAEMON_CLOCK_LAG) if mode == "daemon" else None
        try:
            home = base / f"w{number}"
            home.mkdir()
            with world(home, extra_config=extra, clock=clock, store=store) as harness:
                if mode == "daemon":
                    harness.emulator.set_ttl(DAEMON_TTL)
                rng = random.Random(seed + number)  # noqa: S311
                worker = Worker(number, harness, rng, mode)
                while tally.kills < kills and not failures:
                    tally.add(worker.round())
                    if progress is not None:
                        progress(tally)
                tally.leaks.extend(harness.leaks())
                tally.stray_files.extend(worker.stray_files())
        except BaseException as exc:
            failures.append(exc)
            raise

    with tempfile.TemporaryDirectory(prefix="crash-", dir=root) as base:
        threads = [
            threading.Thread(target=work, args=(n, Path(base)), name=f"crash-{n}", daemon=True)
            for n in range(workers)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    tally.seconds = time.monotonic() - started
    if failures:
        raise failures[0]
    return tally


# -- races -----------------------------------------------------------------------------------


@dataclass
class RaceReport:
    """What the race experiment counted."""

    seconds: float
    token_processes: int = 0
    token_failures: list[str] = field(default_factory=list)
    tokens_printed: int = 0
    distinct_tokens_printed: int = 0
    invalid_when_printed: list[str] = field(default_factory=list)
    not_issued: int = 0
    refresh_processes: int = 0
    refresh_failures: list[str] = field(default_factory=list)
    refreshes: int = 0  # successful rotations at the emulator
    # Who did them: `refresh` and the daemon each log a `refresh.finished` line; `token` logs
    # only warnings, so its share is what is left.
    refreshed_by_token: int = 0
    refreshed_by_refresh: int = 0
    refreshed_by_daemon: int = 0
    refresh_requests: int = 0
    invalid_grant: int = 0
    double_spent: int = 0  # refresh tokens presented more than once
    daemon_code: int | None = None
    leaks: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, object]:
        data = asdict(self)
        for key in ("token_failures", "refresh_failures", "invalid_when_printed", "leaks"):
            data[key] = len(data[key])
        return {"experiment": "races", **data}

    def line(self) -> str:
        s = self.summary()
        return (
            f"races ({s['seconds']} s): token processes={s['token_processes']} "
            f"(failed {s['token_failures']}), tokens printed={s['tokens_printed']} "
            f"({s['distinct_tokens_printed']} distinct, invalid when printed "
            f"{s['invalid_when_printed']}), refresh --force runs={s['refresh_processes']} "
            f"(failed {s['refresh_failures']}), refreshes at the emulator={s['refreshes']} "
            f"(requests {s['refresh_requests']}; by token {s['refreshed_by_token']}, "
            f"by refresh --force {s['refreshed_by_refresh']}, by the daemon "
            f"{s['refreshed_by_daemon']}), invalid_grant={s['invalid_grant']}, "
            f"double-spent refresh tokens={s['double_spent']}, daemon exit={s['daemon_code']}"
        )


RACE_CONCURRENCY = 20
RACE_TTL = (10, 20)
# As in the daemon rounds: tokens arrive 2.5-3.5 s old and fall due 1-7.5 s later, so they are
# due often even though `refresh --force` renews them every few seconds.
RACE_CLOCK_LAG = 2.5
REFRESHED = "outcome=refreshed"


class Races:
    """20 `token` loops, a `refresh --force` loop and the daemon, on short-lived tokens."""

    def __init__(self, harness: Harness, api: httpx.Client, *, seconds: float, seed: int) -> None:
        self.harness = harness
        self.api = api
        self.rng = random.Random(seed)  # noqa: S311 -- the lifetimes' randomness, not secrets
        self.report = RaceReport(seconds=seconds)
        self.deadline = time.monotonic() + seconds
        self.lock = threading.Lock()
        self.failures: list[BaseException] = []
        # Each printed token, the emulator's time just after, and its verdict then.
        self.printed: list[tuple[str, int, bool]] = []

    def valid_now(self, token: str) -> bool:
        """The emulator's own verdict on ``token``, asked right after it was printed.

        Validity only ends (at expiry; rotation leaves old access tokens alive), so a token
        valid now was valid when printed.
        """
        reply = self.api.get(
            "/users/settings",
            headers={
                "Authorization": f"Bearer {token}",
                "trakt-api-key": CLIENT_ID,
                "trakt-api-version": "2",
                "User-Agent": "tvmaniac-refreshd-races",
            },
        )
        return reply.status_code == 200

    def token_loop(self) -> None:
        report = self.report
        try:
            while time.monotonic() < self.deadline:
                run = self.harness.run("token", timeout=VERIFY_TIMEOUT)
                token = run.out.strip()
                at = self.harness.emulator.now()
                ok = run.code == 0 and bool(token) and self.valid_now(token)
                with self.lock:
                    report.token_processes += 1
                    if run.code != 0 or not token:
                        report.token_failures.append(f"exit {run.code}: {last_line(run.err)}")
                    else:
                        self.printed.append((token, at, ok))
        except BaseException as exc:
            self.failures.append(exc)

    def refresh_loop(self) -> None:
        report = self.report
        try:
            while time.monotonic() < self.deadline:
                run = self.harness.run("refresh", "--force", timeout=VERIFY_TIMEOUT)
                with self.lock:
                    report.refresh_processes += 1
                    report.refreshed_by_refresh += run.err.count(REFRESHED)
                    if run.code != 0:
                        report.refresh_failures.append(f"exit {run.code}: {last_line(run.err)}")
        except BaseException as exc:
            self.failures.append(exc)

    def run(self, concurrency: int) -> RaceReport:
        harness, emulator = self.harness, self.harness.emulator
        emulator.set_ttl(self.rng.randint(*RACE_TTL))
        harness.seed(expires_in=RACE_TTL[0])
        daemon = harness.spawn("run")
        try:
            threads = [threading.Thread(target=self.token_loop) for _ in range(concurrency)]
            threads.append(threading.Thread(target=self.refresh_loop))
            for thread in threads:
                thread.start()
            # Meanwhile, vary the lifetime of the tokens issued from now on, within 10-20 s.
            while any(thread.is_alive() for thread in threads):
                emulator.set_ttl(self.rng.randint(*RACE_TTL))
                for thread in threads:
                    thread.join(timeout=1.0)
            daemon.send_signal(signal.SIGTERM)
            stopped = harness.finish(daemon, ("run",), timeout=REAP_TIMEOUT * 3)
        finally:
            if daemon.poll() is None:  # only after a failure: never leave a daemon behind
                daemon.kill()
                daemon.communicate()
        if self.failures:
            raise self.failures[0]
        self.report.daemon_code = stopped.code
        self.report.refreshed_by_daemon = stopped.err.count(REFRESHED)
        self.count()
        return self.report

    def count(self) -> None:
        """Fill in what the emulator saw."""
        emulator, report = self.harness.emulator, self.report
        issued = set()
        for grant in emulator.state()["grants"]:  # type: ignore[attr-defined]
            issued.add(grant["access_token"])
            issued.update(grant["rotated_access_tokens"])
        presented = collections.Counter(
            str(entry["body"].get("refresh_token"))
            for entry in emulator.requests(TOKEN_PATH)
            if isinstance(entry["body"], dict)
            and entry["body"].get("grant_type") == "refresh_token"
        )
        counters = emulator.counters()
        report.tokens_printed = len(self.printed)
        report.distinct_tokens_printed = len({token for token, _, _ in self.printed})
        report.invalid_when_printed = [f"at {at}" for _, at, ok in self.printed if not ok]
        report.not_issued = sum(1 for token, _, _ in self.printed if token not in issued)
        report.refreshes = counters["refresh_success"]
        report.refreshed_by_token = (
            report.refreshes - report.refreshed_by_refresh - report.refreshed_by_daemon
        )
        report.refresh_requests = sum(presented.values())
        report.invalid_grant = counters["invalid_grant"]
        report.double_spent = sum(1 for count in presented.values() if count > 1)
        report.leaks = self.harness.leaks()


def run_races(*, seconds: float, concurrency: int = RACE_CONCURRENCY, seed: int = 0) -> RaceReport:
    """Run the race experiment for ``seconds`` in a world of its own."""
    with (
        tempfile.TemporaryDirectory(prefix="races-") as base,
        world(
            Path(base), extra_config=DAEMON_CONFIG, clock=lambda: time.time() - RACE_CLOCK_LAG
        ) as harness,
        httpx.Client(base_url=harness.emulator.url, timeout=10) as api,
    ):
        return Races(harness, api, seconds=seconds, seed=seed).run(concurrency)


def publish(summary: dict[str, object]) -> None:
    """Append ``summary`` as one JSON line to $TVMANIAC_RELIABILITY_REPORT, if it is set."""
    path = os.environ.get("TVMANIAC_RELIABILITY_REPORT")
    if path:
        with Path(path).open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(summary) + "\n")
