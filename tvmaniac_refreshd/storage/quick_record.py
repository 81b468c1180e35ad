"""The record behind the quick `token` path (quick_token.py): written by the full `token`
command, read by the quick one. It holds no secret and no digest of one.

Kept to ``json``, ``os`` and the layout at import: the quick path is measured in milliseconds.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

from tvmaniac_refreshd.core.errors import UnsafeLocation
from tvmaniac_refreshd.storage.layout import quick_record, state_directory
from tvmaniac_refreshd.storage.safe_files import read_private_text

RECORD_VERSION = 1  # bump when a due time comes to depend on more than the record holds
# Together with the account and the config these decide whether a token is due.
STAMP_KEYS = ("format", "version", "fingerprint", "created_at", "expires_in", "expires_at")


def read_json(path: str) -> object:
    """Return the JSON in the file at ``path`` if it is ours alone (safe_files.py's policy).

    Raises:
        UnsafeLocation: it is a link, a FIFO, another user's, or readable by others.
        OSError, ValueError: it cannot be read, or holds no JSON.
    """
    return json.loads(read_private_text(path))


def stamp(document: Mapping[str, object]) -> list[object]:
    """Return the non-secret values of a stored token document that its due time depends on."""
    return [document.get(key) for key in STAMP_KEYS]


def config_identity(path: str) -> str | None:
    """Return what changes whenever the config file at ``path`` does; None if there is none."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    # Mode and ctime too: `chmod` changes neither size nor mtime, and a config made readable
    # by others must reach the full command, which warns about it.
    return (
        f"{os.path.abspath(path)}|{info.st_dev}|{info.st_ino}|{info.st_size}|{info.st_mtime_ns}"
        f"|{info.st_mode:o}|{info.st_ctime_ns}"
    )


def remember(
    environ: Mapping[str, str],
    *,
    config: str | None,
    default_account: str | None,
    account: str,
    document_text: str,
    fresh_until: int,
    file_store: str | None = None,
) -> None:
    """Write down a full `token` run's decision for ``account`` (see the module docstring).

    ``config`` is the identity taken *before* the config was read, so that an edit made
    meanwhile makes the record stale rather than wrong. ``file_store`` is the directory of the
    file store when the config chose it (None: the keyring); it holds for as long as the config.
    """
    from tvmaniac_refreshd.storage.safe_files import (  # noqa: PLC0415
        ensure_private_dir,
        write_atomically,
    )

    state = state_directory(environ)
    path = quick_record(state)
    try:
        record = read_json(path)
    except (OSError, ValueError, UnsafeLocation):
        record = {}
    if (
        not isinstance(record, dict)
        or record.get("config") != config
        or record.get("file_store") != file_store
    ):
        record = {}
    accounts = record.get("accounts")
    if not isinstance(accounts, dict):
        accounts = {}
    decision = {"stamp": stamp(json.loads(document_text)), "fresh_until": fresh_until}
    updated = {
        "version": RECORD_VERSION,
        "config": config,
        "default_account": default_account,
        "file_store": file_store,
        "accounts": {**accounts, account: decision},
    }
    if updated != record:
        ensure_private_dir(state)
        write_atomically(path, json.dumps(updated, indent=1))
