"""`token --json`'s object (design.md's command line), shared by the quick and the full path.

Kept to ``json`` and ``time``: the quick `token` path imports it and is measured in milliseconds.
"""

from __future__ import annotations

import json
import time

FORMAT_VERSION = 1


def json_line(account: str, access_token: str, token_type: str, expires_at: int) -> str:
    """Return the object on one line; both paths print it through here, so they agree."""
    return json.dumps(
        {
            "format_version": FORMAT_VERSION,
            "account": account,
            "access_token": access_token,
            "token_type": token_type,
            "expires_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires_at)),
        }
    )
