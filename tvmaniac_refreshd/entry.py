"""The `tvmaniac-refreshd` command: a plain `token` on a token that is not due is answered
before the rest of the program is loaded (quick_token.py); everything else is cli.py's."""

from __future__ import annotations

import os
import sys

from tvmaniac_refreshd import quick_token
from tvmaniac_refreshd.core.hardening import forbid_core_dumps


def main() -> int:
    """Run the command line and return its exit code."""
    # Before any secret is read: no crash dump may hold one (core/hardening.py).
    forbid_core_dumps()
    try:
        code = quick_token.attempt(sys.argv[1:], os.environ, sys.stdout)
    except Exception:  # a bug in the shortcut must cost time, not the answer
        code = None
    if code is not None:
        return code
    from tvmaniac_refreshd.cli.parser import main as full_command  # noqa: PLC0415

    return full_command()
