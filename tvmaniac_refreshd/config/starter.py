"""`config init`: the starter config, and writing it without ever replacing a file."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tvmaniac_refreshd.config.settings import ACCOUNT_NAME, parse_config
from tvmaniac_refreshd.core.errors import RefreshdError, UsageError
from tvmaniac_refreshd.core.locations import TRAKT_APPS

TEMPLATE = """\
# tvmaniac-refreshd configuration, written by `tvmaniac-refreshd config init`.
# Every key, with its default and why: `tvmaniac-refreshd config example`.

[accounts.{account}]
provider = "trakt"
client_id = {client_id}
# The client secret is best kept in the keyring: `tvmaniac-refreshd config set-secret`.
# client_secret = "..."
# auth_url = "https://auth.trakt.tv"    # OAuth host; http://127.0.0.1:PORT for the emulator
# api_url  = "https://api.trakt.tv"     # API host; the same emulator URL
"""


def starter_config(client_id: str, account: str = "default") -> str:
    """Return the text of a starter config for one Trakt account.

    Raises:
        UsageError: if the client id or the account name could not be used in a config.
    """
    client_id = client_id.strip()
    if not client_id or any(ch in client_id for ch in "\r\n\0"):
        raise UsageError(f"the client id must be one non-empty line (from {TRAKT_APPS})")
    if not ACCOUNT_NAME.fullmatch(account):
        raise UsageError(f"account names use letters, digits, '_', '.' and '-', not {account!r}")
    # A JSON string with ASCII escapes is also a TOML basic string.
    text = TEMPLATE.format(account=account, client_id=json.dumps(client_id))
    parse_config(text)  # what we write must load; a bug here must not leave a broken file
    return text


def already_exists(path: Path) -> RefreshdError:
    """The error for a config that is already there: it is never replaced."""
    return RefreshdError(
        f"{path} already exists; it was left as it is. Check it with "
        "`tvmaniac-refreshd config check`, or move it away first"
    )


def write_new(path: Path, text: str) -> None:
    """Create ``path`` with ``text``, mode 0600 from the first byte; never replace a file.

    Raises:
        RefreshdError: if the file exists or cannot be created.
    """
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise already_exists(path) from None
    except OSError as exc:
        raise RefreshdError(f"cannot create {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        path.unlink(missing_ok=True)  # half a config would be worse than none
        raise RefreshdError(f"cannot write {path}: {exc.strerror}") from None
