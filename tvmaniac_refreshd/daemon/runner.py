"""`tvmaniac-refreshd run`: the daemon's process: signals, scheduler, systemd, shutdown.

Signals are blocked in every thread and taken synchronously by the main thread with
``sigwait``, so no handler ever runs in the middle of a keyring call or a refresh.
"""

from __future__ import annotations

import os
import random
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from tvmaniac_refreshd.config.settings import load_config
from tvmaniac_refreshd.core.errors import EXIT_OK, ConfigError, RefreshdError
from tvmaniac_refreshd.core.logs import get_logger
from tvmaniac_refreshd.daemon import instance
from tvmaniac_refreshd.daemon.alerts import Alerter
from tvmaniac_refreshd.daemon.decisions import Daemon
from tvmaniac_refreshd.daemon.notify import Notifier, watchdog_interval
from tvmaniac_refreshd.daemon.scheduler import Scheduler
from tvmaniac_refreshd.storage.paths import state_dir

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from tvmaniac_refreshd.config.settings import Account, Config
    from tvmaniac_refreshd.daemon.refresher import Refresher
    from tvmaniac_refreshd.storage.state import StateFiles

# SIGUSR1 (instance.CHANGED) is the CLI saying it changed an account: look at it now.
SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP, instance.CHANGED}
# systemd's TimeoutStopSec and launchd's ExitTimeOut (20 s) must not be reached: a refresh in
# flight gets this long to finish storing its tokens.
STOP_GRACE_SECONDS = 5.0


class Wiring(Protocol):
    """What the daemon needs from the command that starts it (cli.app.App is one)."""

    environ: Mapping[str, str]
    clock: Callable[[], float]

    @property
    def config(self) -> Config: ...

    @property
    def states(self) -> StateFiles: ...

    def refresher(self, account: Account) -> Refresher: ...

    def adopt(self, config: Config) -> None: ...


def run_daemon(app: Wiring) -> int:
    """Run until SIGTERM or SIGINT; SIGHUP re-reads the config. Return the exit code.

    SIGUSR1 re-plans the accounts the CLI changed (login, logout, refresh) without a reload.
    """
    signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)  # before any thread exists
    log = get_logger()
    config = app.config
    with instance.hold(instance.lock_path(state_dir(app.environ), config.source)) as held:
        if not held:
            pid = instance.running_pid(instance.lock_path(state_dir(app.environ), config.source))
            raise RefreshdError(
                f"a daemon for {config.source} is already running (pid {pid}); "
                "stop it first, or use `systemctl --user status tvmaniac-refreshd`"
            )
        notifier = Notifier(app.environ)
        scheduler = Scheduler(max_workers=config.daemon.max_concurrency)
        alerter = Alerter()
        daemon = Daemon(
            config,
            planner=scheduler,
            refresher=app.refresher,
            states=app.states,
            alerter=alerter,
            clock=app.clock,
            monotonic=time.monotonic,
            share=random.random,  # jitter, not cryptography
            on_change=lambda: notifier.status(daemon.status_line()),
        )
        daemon.plan_all()
        _schedule_ticks(scheduler, daemon, notifier, config, app.environ)
        scheduler.every("check", config.daemon.check_interval, daemon.plan_all)
        scheduler.start()
        notifier.ready(daemon.status_line())
        log.info("daemon.ready", accounts=len(config.accounts), status=daemon.status_line())
        daemon.log_plan()
        while True:
            received = signal.sigwait(SIGNALS)
            if received == instance.CHANGED:
                # On the scheduler's pool: the main thread stays free for the next signal.
                scheduler.at("cli-change", app.clock(), daemon.notice_changes)
                continue
            if received != signal.SIGHUP:
                break
            notifier.reloading()
            try:
                config = load_config(Path(config.source))
            except ConfigError as exc:
                # Not .exception(): the message lists every problem; a traceback adds nothing.
                log.error(  # noqa: TRY400
                    "daemon.reload_rejected", error=str(exc), action="kept the old config"
                )
            else:
                app.adopt(config)
                daemon.reload(config)
                log.info("daemon.reloaded", accounts=len(config.accounts))
            notifier.ready(daemon.status_line())
        notifier.stopping()
        log.info("daemon.stopping", signal=signal.Signals(received).name)
        scheduler.shutdown()
        idle = daemon.wait_idle(STOP_GRACE_SECONDS)
        alerter.close(1.0)
    if not idle:
        log.warning("daemon.abandoned_refresh", action="exiting; the keyring holds a whole item")
        sys.stderr.flush()
        # Worker threads would otherwise be joined at exit, for as long as a slow server takes.
        os._exit(EXIT_OK)
    return EXIT_OK


def _schedule_ticks(
    scheduler: Scheduler,
    daemon: Daemon,
    notifier: Notifier,
    config: Config,
    environ: Mapping[str, str],
) -> None:
    """Plan the tick, and the watchdog ping on the same wake-up when the tick is often enough.

    The ping comes from a scheduler job either way, so a wedged scheduler stops pinging and
    systemd restarts it. Riding on the tick saves the idle daemon its own wake-ups (the
    shipped WatchdogSec= is twice the default tick); a tick too rare for the watchdog's
    period gets a ping job of its own instead.
    """
    interval = watchdog_interval(environ, os.getpid())
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
