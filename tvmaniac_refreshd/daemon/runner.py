"""`tvmaniac-refreshd run`: the daemon's process: signals, scheduler, systemd, shutdown.

Signals are blocked in every thread and taken synchronously by the main thread with
``sigwait``, so no handler ever runs in the middle of a keyring call or a refresh.
"""

from __future__ import annotations

import contextlib
import functools
import os
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tvmaniac_refreshd.core.errors import EXIT_OK, AlreadyRunning, ConfigError, RefreshdError
from tvmaniac_refreshd.core.launchd_log import (
    in_background_session,
    supervised_by_launchd,
    trim_launchd_logs,
)
from tvmaniac_refreshd.core.logs import get_logger
from tvmaniac_refreshd.daemon import events, instance
from tvmaniac_refreshd.daemon.alerts import Alerter
from tvmaniac_refreshd.daemon.decisions import Daemon
from tvmaniac_refreshd.daemon.hook_sandbox import current_unit
from tvmaniac_refreshd.daemon.job_schedule import JobPlan
from tvmaniac_refreshd.daemon.job_unit import in_daemon_unit, run_in_unit, self_command
from tvmaniac_refreshd.daemon.jobs import JobEngine, running_jobs
from tvmaniac_refreshd.daemon.notify import Notifier, watchdog_interval
from tvmaniac_refreshd.daemon.scheduler import Scheduler
from tvmaniac_refreshd.storage.job_state import JobStates
from tvmaniac_refreshd.storage.layout import Layout

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterator, Mapping
    from contextlib import AbstractContextManager
    from pathlib import Path

    from tvmaniac_refreshd.config.settings import Account, Config
    from tvmaniac_refreshd.daemon.refresher import Refresher
    from tvmaniac_refreshd.storage.state import StateFiles

# SIGUSR1 (instance.CHANGED) is the CLI saying it changed an account: look at it now.
SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP, instance.CHANGED}
# systemd's TimeoutStopSec and launchd's ExitTimeOut (20 s) must not be reached: a refresh in
# flight gets this long to finish storing its tokens.
STOP_GRACE_SECONDS = 5.0
# How often a daemon waiting for a valid config looks at the file (a stat; nothing else runs).
CONFIG_POLL_SECONDS = 5.0
LOG_TRIM_SECONDS = 3600.0


def wait_for_valid_config(load: Callable[[], object], wait: Callable[[], int]) -> bool:
    """Return True once ``load`` succeeds; False if a stop signal comes first.

    launchd has no RestartPreventExitStatus: a daemon that exits 78 on a bad config is restarted
    every ThrottleInterval, forever. So under launchd the daemon stays up in a "config invalid"
    state instead, and tries again each time ``wait`` returns SIGHUP (the file changed, or the
    user sent one). Any other signal (SIGTERM from bootout) ends it with exit 0, which
    ``KeepAlive = {SuccessfulExit = false}`` leaves down.
    """
    log = get_logger()
    while True:
        try:
            load()
        except ConfigError as exc:
            # Not .exception(): the message lists every problem; a traceback adds nothing.
            log.error(  # noqa: TRY400
                "daemon.config_invalid",
                error=str(exc),
                action="waiting; fix the file and the daemon starts by itself",
            )
        else:
            return True
        while (received := wait()) != signal.SIGHUP:
            if received in (signal.SIGTERM, signal.SIGINT):
                return False
            # Anything else (the CLI's "accounts changed" signal) means nothing without a config.


@contextlib.contextmanager
def config_watch(
    identity: Callable[[], object], poll: float = CONFIG_POLL_SECONDS
) -> Iterator[Callable[[], int]]:
    """Yield a ``wait`` for ``wait_for_valid_config``: the next signal, SIGHUP when the file
    whose ``identity`` is watched changes. sigwait, not sigtimedwait: macOS has no sigtimedwait.
    """
    signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)  # before the watcher thread exists
    main = threading.main_thread().ident
    stop = threading.Event()

    def watch() -> None:
        seen = identity()
        while not stop.wait(poll):
            current = identity()
            if current != seen and main is not None:
                seen = current
                signal.pthread_kill(main, signal.SIGHUP)

    watcher = threading.Thread(target=watch, name="config watch", daemon=True)
    watcher.start()
    try:
        yield lambda: signal.sigwait(SIGNALS)
    finally:
        stop.set()


@dataclass(frozen=True)
class Engines:
    """What the daemon runs with, as the composition root built it from one config."""

    config: Config
    refreshers: Mapping[str, Refresher]  # one per account of ``config``
    # For an account the map does not hold as it is now: a worker that picked it from the
    # config before a reload swapped the engines.
    build: Callable[[Account], Refresher]
    # The store's bulk read for planning every account (TokenStore.read_ahead).
    read_ahead: Callable[[Collection[str]], AbstractContextManager[None]] = lambda _: (
        contextlib.nullcontext()
    )

    def refresher(self, account: Account) -> Refresher:
        found = self.refreshers.get(account.name)
        if found is None or found.account != account:
            return self.build(account)
        return found


def _service_status_command() -> str:
    if sys.platform == "darwin":
        return f"`launchctl print gui/{os.getuid()}/com.tvmaniac.refreshd`"
    return "`systemctl --user status tvmaniac-refreshd`"


def run_daemon(
    engines: Engines,
    *,
    reload: Callable[[], Engines],
    states: StateFiles,
    environ: Mapping[str, str],
    clock: Callable[[], float],
) -> int:
    """Run until SIGTERM or SIGINT; SIGHUP calls ``reload`` for new engines. Return the exit code.

    ``reload`` raises ConfigError for an invalid config, which is logged and the old one kept.
    SIGUSR1 re-plans the accounts the CLI changed (login, logout, refresh) without a reload.
    """
    signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)  # before any thread exists
    log = get_logger()
    config = engines.config
    pid_file = Layout.of(environ).daemon_pid(config.source)
    if supervised_by_launchd(environ) and not wait_until_free(pid_file):
        return EXIT_OK
    with instance.hold(pid_file) as held:
        if not held:
            pid = instance.running_pid(pid_file)
            raise AlreadyRunning(
                f"a daemon for {config.source} is already running (pid {pid}); "
                f"stop it first, or see {_service_status_command()}"
            )
        notifier = Notifier(environ)
        scheduler = Scheduler(
            max_workers=config.daemon.max_concurrency, job_workers=max(1, len(config.jobs))
        )
        alerter = Alerter(desktop=not in_background_session(environ), unit=current_unit(environ))
        # Jobs added before scheduler.start() wait for it, by which time ``daemon`` exists.
        sources = events.start(
            environ,
            on_resume=lambda: scheduler.at("resume", clock(), daemon.resumed),
            on_clock_step=lambda: scheduler.at("clock-step", clock(), daemon.clock_stepped),
        )
        daemon = Daemon(
            config,
            planner=scheduler,
            refresher=engines.refresher,
            states=states,
            alerter=alerter,
            clock=clock,
            monotonic=time.monotonic,
            share=random.random,  # jitter, not cryptography
            on_change=lambda: notifier.status(daemon.status_line()),
            network=sources.network,
            read_ahead=engines.read_ahead,
        )
        jobs = _job_plan(daemon, scheduler, alerter, engines, environ)
        daemon.plan_all()
        _schedule_ticks(scheduler, daemon, notifier, config, environ, events=sources.complete)
        sources.network.subscribe(
            lambda online: _network_changed(online, scheduler, daemon, clock, notifier)
        )
        scheduler.start()
        notifier.ready(daemon.status_line())
        log.info(
            "daemon.ready",
            accounts=len(config.accounts),
            status=daemon.status_line(),
            events=sources.describe(),
            online=sources.network.online,
        )
        daemon.log_plan()
        while True:
            received = signal.sigwait(SIGNALS)
            if received == instance.CHANGED:
                # On the scheduler's pool: the main thread stays free for the next signal.
                scheduler.at("cli-change", clock(), daemon.notice_changes)
                continue
            if received != signal.SIGHUP:
                break
            notifier.reloading()
            try:
                engines = reload()
            except ConfigError as exc:
                # Not .exception(): the message lists every problem; a traceback adds nothing.
                log.error(  # noqa: TRY400
                    "daemon.reload_rejected", error=str(exc), action="kept the old config"
                )
            else:
                config = engines.config
                _adopt(engines, daemon, jobs, scheduler)
                log.info("daemon.reloaded", accounts=len(config.accounts))
            notifier.ready(daemon.status_line())
        notifier.stopping()
        log.info("daemon.stopping", signal=signal.Signals(received).name)
        sources.close()
        _stop_planning(scheduler, jobs)
        idle = daemon.wait_idle(STOP_GRACE_SECONDS)
        alerter.close(1.0)
    if not idle:
        log.warning("daemon.abandoned_refresh", action="exiting; the keyring holds a whole item")
        sys.stderr.flush()
        # Worker threads would otherwise be joined at exit, for as long as a slow server takes.
        os._exit(EXIT_OK)
    return EXIT_OK


def _stop_planning(scheduler: Scheduler, jobs: JobPlan) -> None:
    """Start nothing more, and kill the jobs still running (a stop does not wait for them)."""
    scheduler.shutdown()
    jobs.close()


def _adopt(engines: Engines, daemon: Daemon, jobs: JobPlan, scheduler: Scheduler) -> None:
    """A reload's new config and refreshers, for the accounts and for the jobs (a worker
    each: one job's run must not wait for another's)."""
    daemon.reload(engines.config, refresher=engines.refresher)
    scheduler.resize_jobs(len(engines.config.jobs))
    jobs.reload(engines.config)


def _job_plan(
    daemon: Daemon,
    scheduler: Scheduler,
    alerter: Alerter,
    engines: Engines,
    environ: Mapping[str, str],
) -> JobPlan:
    """The jobs of the config on the daemon's scheduler, sharing its alerter and refreshers;
    the daemon's refreshes wait for the jobs that use a token."""
    engine = JobEngine(
        refresher=engines.refresher,
        states=JobStates(Layout.of(environ).jobs),
        alerter=alerter,
        clock=daemon.clock,
        share=random.random,  # jitter, not cryptography
        environ=environ,
        network=daemon.network,  # issue 29's NetworkState: a job may wait for the link
    )
    states = engine.states
    daemon.jobs_using = lambda account: running_jobs(daemon.config, states, account)
    daemon.after_jobs = _after_jobs
    launcher = None
    if in_daemon_unit(environ):  # outside the unit's sandbox, as timer mode runs them
        command = self_command(daemon.config.source)
        launcher = functools.partial(run_in_unit, command=command, environ=environ)
    plan = JobPlan(
        daemon.config,
        planner=scheduler,
        engine=engine,
        clock=daemon.clock,
        on_change=daemon.announce,
        launcher=launcher,
    )
    daemon.jobs_status = plan.status_line
    plan.plan_all()
    return plan


# The accounts whose in-use lock a thread watches (one each, however often the refresh looks).
_watched: set[str] = set()
_watched_lock = threading.Lock()


def _after_jobs(refresher: Refresher, then: Callable[[], object]) -> None:
    """Call ``then`` once no job runs with ``refresher``'s token: a thread blocks on the in-use
    lock (storage/locks.py), so the refresh follows the job's end, in whatever process it ran."""
    name = refresher.account.name
    with _watched_lock:
        if name in _watched:
            return
        _watched.add(name)

    def watch() -> None:
        try:
            refresher.wait_unused()
        except RefreshdError as exc:  # the periodic look (decisions.py) still comes
            get_logger(account=name).warning("daemon.job_watch_failed", error=str(exc))
            return
        finally:
            with _watched_lock:
                _watched.discard(name)
        then()

    threading.Thread(target=watch, name=f"after jobs {name}", daemon=True).start()


def wait_until_free(lock: Path) -> bool:
    """Return True once no daemon holds ``lock``; False if a stop signal comes first.

    Under launchd only: the other daemon is a `run` left open in Terminal, or our agent in the
    other domain (gui/ and user/). Exiting 1 (AlreadyRunning) would be restarted every
    ThrottleInterval, forever; exiting 0 would leave this agent down after the other one
    stops. So it says so once and waits. Should a third process take the lock first, the
    hold that follows fails as before, and launchd's next start waits here again.
    """
    pid = instance.running_pid(lock)
    if pid is None:
        return True
    get_logger().warning(
        "daemon.waiting_for_other_instance",
        pid=pid,
        lock=str(lock),
        action=(
            "another daemon serves this config (a `run` in Terminal, or the agent in the other "
            "launchd domain); this one starts when it stops"
        ),
    )
    with config_watch(lambda: instance.running_pid(lock)) as wait:
        while instance.running_pid(lock) is not None:
            # SIGHUP: the watcher saw the holder change; SIGTERM/SIGINT: bootout, or Ctrl-C.
            if wait() in (signal.SIGTERM, signal.SIGINT):
                return False
    return True


def _network_changed(
    online: bool,
    scheduler: Scheduler,
    daemon: Daemon,
    clock: Callable[[], float],
    notifier: Notifier,
) -> None:
    """From the source's thread: log it, and run what waited for the network on the pool."""
    get_logger().info("daemon.network_changed", online=online, source=daemon.network.source)
    if online:
        scheduler.at("network", clock(), daemon.network_returned)
    else:
        notifier.status(daemon.status_line())


def _schedule_ticks(
    scheduler: Scheduler,
    daemon: Daemon,
    notifier: Notifier,
    config: Config,
    environ: Mapping[str, str],
    *,
    events: bool = False,
) -> None:
    """Plan the periodic jobs: the re-check, the tick, and the watchdog ping on the same wake-up
    as the tick when the tick is often enough.

    ``events``: logind tells of a resume and a network source of the network, so no tick is
    needed (the CLI signals its changes); only the watchdog ping wakes the idle daemon.

    The ping comes from a scheduler job either way, so a wedged scheduler stops pinging and
    systemd restarts it. Riding on the tick saves the idle daemon its own wake-ups (the
    shipped WatchdogSec= is twice the default tick); a tick too rare for the watchdog's
    period gets a ping job of its own instead.
    """
    # Inline: the check reads no keyring and re-plans nothing that stands (Daemon.recheck), so
    # it costs the scheduler's one wake-up; what it finds stale goes to the pool.
    scheduler.every("check", config.daemon.check_interval, daemon.recheck, inline=True)
    if supervised_by_launchd(environ):
        # launchd never rotates the job's log files: keep them small ourselves.
        scheduler.every("logs", LOG_TRIM_SECONDS, lambda: trim_launchd_logs(environ))
    interval = watchdog_interval(environ, os.getpid())
    if events:
        if interval is not None:
            # On the scheduler's thread: one wake-up per ping instead of two (scheduler and
            # worker), which is most of what an idle daemon with event sources costs. A wedged
            # scheduler still stops the pings.
            scheduler.every("watchdog", interval, notifier.watchdog, inline=True)
        return
    if interval is None:
        scheduler.every("tick", config.daemon.tick, daemon.tick)
        return
    if config.daemon.tick <= interval:

        def tick_and_ping() -> None:
            notifier.watchdog()  # first: a slow keyring in the tick must not delay the ping
            daemon.tick()

        scheduler.every("tick", config.daemon.tick, tick_and_ping)
        return
    scheduler.every("tick", config.daemon.tick, daemon.tick)
    scheduler.every("watchdog", interval, notifier.watchdog)
