"""Questions asked on a terminal. Ctrl-D (end of input) is an empty answer: the verb then says
what an empty answer gets, rather than a Python EOFError reaching the user."""

from __future__ import annotations

import getpass
from typing import TextIO


def ask(prompt: str, *, err: TextIO, secret: bool = False) -> str:
    """Return the line typed after ``prompt`` (without echo if ``secret``), or "" on Ctrl-D."""
    try:
        return getpass.getpass(prompt) if secret else input(prompt)
    except EOFError:
        err.write("\n")  # the cursor is still after the prompt: the message gets its own line
        return ""
