"""The emulator's own activation page: what trakt.tv/activate is to a real device login.

`python -m trakt_emulator` points the device flow's verification URL here, so a person trying
the program without a Trakt account can approve a code in a browser (or with curl), instead of
being sent to the real trakt.tv, which knows nothing of the emulator's codes.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from urllib.parse import parse_qs

from trakt_emulator.replies import HTML_TYPE, Reply
from trakt_emulator.state import State

PATH = "/activate"
USER = "alice"  # who approves: the emulator has no real users

_PAGE = """<!DOCTYPE html>
<html><head><title>Trakt emulator: activate</title></head>
<body>
<h1>Trakt emulator: activate a device</h1>
<p>{message}</p>
<form method="post" action="/activate">
<label>Code: <input name="user_code" autofocus></label>
<button type="submit">Approve</button>
</form>
<p>Codes waiting for approval: {pending}</p>
<p>Or with curl: <code>curl -X POST -d '{{"user_code": "CODE"}}' {base}/_emulator/approve</code></p>
</body></html>
"""


def page(state: State, headers: Mapping[str, str], message: str = "") -> Reply:
    """The activation form, listing the codes that wait."""
    pending = ", ".join(state.pending_user_codes()) or "none"
    base = f"http://{headers.get('host', '127.0.0.1')}"
    body = _PAGE.format(
        message=html.escape(message or "Enter the code the program showed you."),
        pending=html.escape(pending),
        base=html.escape(base),
    )
    return Reply(200, body.encode(), HTML_TYPE, app=False)


def approve(state: State, headers: Mapping[str, str], body: bytes) -> Reply:
    """Approve the code from the form, as the user pressing "Yes" on trakt.tv would."""
    fields = parse_qs(body.decode("utf-8", "replace"))
    code = (fields.get("user_code") or [""])[0].strip().upper()
    try:
        state.approve(code, USER)
    except KeyError:
        return page(state, headers, f"No pending code {code!r}; check it and try again.")
    return page(state, headers, f"Approved {code}. Go back to the terminal.")
