"""Fix-it hints that work as printed: each `tvmaniac-refreshd ...` a message suggests repeats the
--config and --account that choose the same config and account as the command that printed it.

Messages are written deep down (the refresher, the config loader) without knowing how the
command was called; the command line completes them here, on their way out.
"""

from __future__ import annotations

import re
import shlex

from tvmaniac_refreshd.core.locations import APP

# A command in backquotes: the program's name, then its words up to the closing backquote.
_COMMAND = re.compile(rf"`{re.escape(APP)}((?: [^`]*)?)`")


def complete(text: str, *, config: str | None, account: str | None) -> str:
    """Return ``text`` with every suggested command given ``--config`` and ``--account``.

    An option the suggestion already names is left as it is.
    """
    if not config and not account:
        return text

    def fill(match: re.Match[str]) -> str:
        rest = match.group(1)
        words = rest.split()
        added = []
        if config and "--config" not in words:
            added += ["--config", shlex.quote(config)]
        if account and "--account" not in words:
            added += ["--account", shlex.quote(account)]
        return f"`{APP}{''.join(' ' + word for word in added)}{rest}`"

    return _COMMAND.sub(fill, text)
