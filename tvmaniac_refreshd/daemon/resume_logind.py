"""logind as the resume event source: ``PrepareForSleep(false)`` says the machine woke up.

Only the owner of ``org.freedesktop.login1`` is believed (system_bus.SignalWatch checks the
sender): a resume makes the daemon re-plan every account at once, and no other peer may
trigger that.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from tvmaniac_refreshd.daemon.system_bus import SignalWatch

SERVICE = "org.freedesktop.login1"
PATH = "/org/freedesktop/login1"
INTERFACE = "org.freedesktop.login1.Manager"
NAME = "logind"


def start(environ: Mapping[str, str], on_resume: Callable[[], object]) -> SignalWatch:
    """Call ``on_resume`` after each resume; BusUnavailable if logind is not running."""
    watch = SignalWatch(environ, SERVICE)
    try:
        watch.owner()
        watch.start(
            path=PATH,
            interface=INTERFACE,
            member="PrepareForSleep",
            # True: going to sleep (nothing to do: the scheduler sleeps with the machine).
            on_signal=lambda body: None if body[0] else on_resume(),
        )
    except BaseException:
        watch.close()
        raise
    return watch
