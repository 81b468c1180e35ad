"""`run`: start the daemon with the engines the root built, and rebuild them on SIGHUP.

The daemon is handed its config and one refresher per account; on reload the root reads the
file again (it alone owns the current config) and hands over new ones. Nothing in the daemon
calls back up into the root or the command line.
"""

from __future__ import annotations

from tvmaniac_refreshd.core.errors import EXIT_OK
from tvmaniac_refreshd.core.launchd_log import supervised_by_launchd, trim_launchd_logs
from tvmaniac_refreshd.daemon.runner import Engines, config_watch, run_daemon, wait_for_valid_config
from tvmaniac_refreshd.runtime.root import Runtime
from tvmaniac_refreshd.runtime.token_answers import token_answers
from tvmaniac_refreshd.storage import quick_record


def engines(runtime: Runtime) -> Engines:
    """The daemon's engines for the root's current config."""
    return Engines(
        runtime.config, runtime.refreshers(), runtime.refresher, runtime.store.read_ahead
    )


def reloaded(runtime: Runtime) -> Engines:
    """Read the config again and build the engines for it.

    Raises:
        ConfigError: the file is invalid; the root keeps the current config.
    """
    runtime.reload()
    return engines(runtime)


def serve(runtime: Runtime) -> int:
    """Run the daemon until it is told to stop; return the exit code."""
    if supervised_by_launchd(runtime.environ):
        trim_launchd_logs(runtime.environ)
        path = str(runtime.config_location)
        with config_watch(lambda: quick_record.config_identity(path)) as wait:
            if not wait_for_valid_config(lambda: runtime.config, wait):
                return EXIT_OK
    # A store this system cannot provide (exit 78) stops the daemon at once, not at each retry.
    runtime.store  # noqa: B018
    with token_answers(runtime):
        return run_daemon(
            engines(runtime),
            reload=lambda: reloaded(runtime),
            states=runtime.states,
            environ=runtime.environ,
            clock=runtime.clock,
        )
