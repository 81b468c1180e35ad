"""`token` on a token that is not due, without loading the rest of the program.

Scripts call `token` all the time, and loading the config, the refresh policy and the command
line costs more than the answer. So when the full `token` command prints a token, it writes down
its decision (``remember``): the config file's identity, which account is the default, and for
the account the token's non-secret stamp (format, client fingerprint, issue time, lifetime,
expiry) with the time the token falls due. A later plain `token` (``attempt``) reads the
keyring item (or asks a running daemon for it: storage/token_socket.py) and prints its access
token on its own only while all of that still holds and no rejection is on record. Anything
else (another flag, a changed config, a refreshed or new login, a keyring that is locked or not
the Secret Service) goes to the full command, which decides and writes down the new decision.
The record holds no secret and no digest of one.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Mapping, Sequence

from tvmaniac_refreshd.core.errors import UnsafeLocation
from tvmaniac_refreshd.core.locations import ACCOUNT_ENV, APP
from tvmaniac_refreshd.core.token_form import is_token_text
from tvmaniac_refreshd.storage import layout
from tvmaniac_refreshd.storage.quick_record import (
    RECORD_VERSION,
    config_identity,
    read_json,
    stamp,
)
from tvmaniac_refreshd.storage.safe_files import is_private_dir, read_private_text
from tvmaniac_refreshd.storage.session_bus import (
    Unsure,
    adopt_session_bus,
    may_choose_backend_explicitly,
)
from tvmaniac_refreshd.storage.token_socket import ask as ask_daemon

# Not typing's: its import costs this path 2 ms (mypy and ruff read the name alike).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import TextIO

# A hung keyring sends `token` to the full command, which waits its configured timeout.
READ_TIMEOUT = 2.0
GLOBAL_OPTIONS = ("--config", "--account")  # on either side of the verb, as the parser takes them


def attempt(
    argv: Sequence[str],
    environ: os._Environ[str],
    out: TextIO,
    *,
    platform: str = sys.platform,
    clock: float | None = None,
) -> int | None:
    """Print the access token and return 0, or return None to leave it to the full command."""
    request = _parse(argv)
    if request is None:
        return None
    config, account, min_valid, as_json = request
    found = stored_token(config, account, min_valid, environ, platform=platform, now=clock)
    if found is None:
        return None
    if as_json:
        # Only here: a plain `token` must not pay even this small import.
        from tvmaniac_refreshd.core.token_json import json_line  # noqa: PLC0415

        line = json_line(*found)
    else:
        line = found[1]
    try:
        out.write(line + "\n")
        out.flush()
    except OSError:
        return None  # the full command reports it, in its words
    return 0


def stored_token(
    config: str | None,
    account: str | None,
    min_valid: int | None,
    environ: os._Environ[str] | dict[str, str],
    *,
    platform: str = sys.platform,
    now: float | None = None,
) -> tuple[str, str, str, int] | None:
    """Return (account, access token, token type, expiry) when the last full run's decision
    still holds for it (the module docstring says when); None means: ask the full program."""
    if may_choose_backend_explicitly(environ, platform):
        return None
    if not is_private_dir(layout.state_directory(environ, platform)):
        return None  # the full command names what is wrong with it, and exits 78
    account = account or environ.get(ACCOUNT_ENV) or None  # as App.account_name
    adopt_session_bus(environ)
    return _fresh_token(config, account, min_valid, environ, time.time() if now is None else now)


def _parse(argv: Sequence[str]) -> tuple[str | None, str | None, int | None, bool] | None:
    """Return (--config, --account, --min-valid, --json) of a plain `token` command line,
    else None.

    --config and --account may stand before or after `token`, as the full parser allows.
    """
    options: dict[str, str] = {}
    args = list(argv)
    verb_seen = False
    as_json = False
    while args:
        word = args.pop(0)
        if word == "token" and not verb_seen:
            verb_seen = True
            continue
        if word == "--json" and verb_seen and not as_json:
            as_json = True
            continue
        name, equals, value = word.partition("=")
        allowed = (*GLOBAL_OPTIONS, "--min-valid") if verb_seen else GLOBAL_OPTIONS
        if name not in allowed or name in options:  # a repeated option: the parser decides
            return None  # anything else (help, -v, a typo) is the full command's job
        if not equals:
            if not args:
                return None
            value = args.pop(0)
        if not value or value.startswith("-"):
            return None
        options[name] = value
    if not verb_seen:
        return None
    min_valid = None
    if "--min-valid" in options:
        from tvmaniac_refreshd.core.durations import parse_duration  # noqa: PLC0415

        try:
            min_valid = parse_duration(options["--min-valid"])
        except ValueError:
            return None
    return options.get("--config"), options.get("--account"), min_valid, as_json


def _fresh_token(
    config: str | None,
    account: str | None,
    min_valid: int | None,
    environ: Mapping[str, str],
    now: float,
) -> tuple[str, str, str, int] | None:
    """Return (account, access token, token type, expiry) when the token may be printed as is."""
    directory = layout.state_directory(environ)
    try:
        found = _decision(directory, config_identity(layout.config_file(config, environ)), account)
        if found is None or _rejected(layout.state_file(directory, found[0])):
            return None
        name, decision, file_store = found
        document = _stored_document(directory, name, file_store, environ)
    except (OSError, ValueError, Unsure, UnsafeLocation):
        return None
    if not isinstance(document, dict) or stamp(document) != decision.get("stamp"):
        return None
    expires_at = document.get("expires_at")
    if not isinstance(expires_at, int):
        return None
    if min_valid is not None:
        fresh = expires_at - now >= min_valid
    else:
        fresh_until = decision.get("fresh_until")
        fresh = isinstance(fresh_until, int) and now < fresh_until
    token = document.get("access_token")
    token_type = document.get("token_type", "bearer")
    if fresh and isinstance(token, str) and is_token_text(token) and isinstance(token_type, str):
        return found[0], token, token_type, expires_at
    return None


def _stored_document(
    directory: str, name: str, file_store: str | None, environ: Mapping[str, str]
) -> object:
    """Return the stored document of ``name``: the file store's file, else a running daemon's
    copy (storage/token_socket.py), else the keyring item, read here.

    Raises:
        OSError, ValueError, Unsure, UnsafeLocation: it cannot be read.
    """
    if file_store is not None:
        return json.loads(read_private_text(layout.token_file(file_store, name)))
    answered = ask_daemon(directory, name, environ.get("DBUS_SESSION_BUS_ADDRESS", ""))
    if answered is not None:
        return answered
    # plain: the access token is printed right away anyway (secret_service.py explains).
    text = read_item(APP, name, timeout=READ_TIMEOUT, environ=environ, encrypted=False)
    return json.loads(text or "null")


def read_item(
    service: str,
    username: str,
    *,
    timeout: float,
    environ: Mapping[str, str],
    encrypted: bool,
) -> str | None:
    """secret_service.read_item, loaded only when no daemon answered: that module and the
    ``typing`` it needs cost this path 3 ms.

    Raises:
        Unsure, OSError: as secret_service.read_item.
    """
    from tvmaniac_refreshd.storage.secret_service import read_item as read  # noqa: PLC0415

    return read(service, username, timeout=timeout, environ=environ, encrypted=encrypted)


def _decision(
    directory: str, config: str | None, account: str | None
) -> tuple[str, dict[str, object], str | None] | None:
    """Return the account, the decision recorded for it under this very config, and the file
    store's directory when the config chose it, if any."""
    record = read_json(layout.quick_record(directory))
    if not isinstance(record, dict) or record.get("version") != RECORD_VERSION:
        return None
    if config is None or record.get("config") != config:
        return None
    name = account if account is not None else record.get("default_account")
    accounts = record.get("accounts")
    decision = accounts.get(name) if isinstance(accounts, dict) else None
    file_store = record.get("file_store")
    if not (isinstance(name, str) and isinstance(decision, dict)):
        return None
    return name, decision, file_store if isinstance(file_store, str) else None


def _rejected(state_file: str) -> bool:
    """Return whether the account's state may record a rejection (as state.StateFiles reads it)."""
    try:
        state = read_json(state_file)
    except FileNotFoundError:
        return False  # no state yet: nothing was ever rejected
    return not isinstance(state, dict) or state.get("reauth_token") is not None
