"""`run`: the daemon in the foreground, as the service manager starts it."""

from __future__ import annotations

from tvmaniac_refreshd.cli.app import App
from tvmaniac_refreshd.cli.grammar import Verb
from tvmaniac_refreshd.cli.options import NoOptions


def run(app: App, _: NoOptions) -> int:
    from tvmaniac_refreshd.runtime.serve import serve  # noqa: PLC0415

    return serve(app)


VERB = Verb(
    "run",
    "Run the daemon in the foreground (the service manager starts this).",
    NoOptions,
    run,
    details="Keeps every account refreshed: each is planned from its token's lifetime, retried\n"
    "with capped exponential backoff after passing failures, and left alone once the\n"
    "provider rejects it (until `login`). Logins and logouts done meanwhile are noticed.\n\n"
    "signals: SIGHUP re-reads the config (an invalid one is rejected and the old one kept);\n"
    "SIGTERM or SIGINT stop it within a few seconds.\n"
    "Under systemd it speaks sd_notify (READY, STATUS, WATCHDOG, RELOADING, STOPPING) and\n"
    "logs to journald with fields such as ACCOUNT, EVENT and REFRESH_RESULT.",
)
