"""The Python API: a valid access token for a Python program, with `token`'s very rules.

::

    from tvmaniac_refreshd.api import RefreshdError, get_token

    try:
        token = get_token()                          # the default account
    except RefreshdError as exc:
        raise SystemExit(exc.exit_code) from exc     # 69, 75, 77, 78: as the command's
    headers = {"Authorization": f"Bearer {token}"}

Same lock, refresh and errors as the `token` command: a token that is due is refreshed first
under the account's lock (at most one refresh in flight across every process), and a failure
raises the error class whose ``exit_code`` the command would have exited with. Importing this
module loads only the error tree; the rest loads on the first call that needs it, and a token
that the last full run found not due is read from the keyring without loading it (as the quick
`token` path does). Warnings (e.g. "refresh failed, the current token is still valid") go to
stderr, as the command's do.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tvmaniac_refreshd.core.errors import (
    ClientRejected,
    ConfigError,
    NotLoggedIn,
    RefreshdError,
    SessionRejected,
    StoreCorrupt,
    StoreUnavailable,
    TransientError,
    UsageError,
)

if TYPE_CHECKING:
    import datetime

__all__ = [
    "ClientRejected",
    "ConfigError",
    "NotLoggedIn",
    "RefreshdError",
    "SessionRejected",
    "StoreCorrupt",
    "StoreUnavailable",
    "Token",
    "TransientError",
    "UsageError",
    "get_token",
    "get_token_info",
]


@dataclass(frozen=True)
class Token:
    """A valid access token and what a caller may need to know about it."""

    account: str
    access_token: str = field(repr=False)  # never in a repr, a log line or a traceback
    token_type: str
    expires_at: datetime.datetime  # aware, UTC: `token --json` writes the same as ISO 8601


def get_token(
    account: str | None = None,
    *,
    min_valid: int | str | None = None,
    config: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> str:
    """Return a valid access token for ``account``, refreshing it first if it is due.

    Args:
        account: the account's name; None picks it as the command does (the only account,
            else ``default``).
        min_valid: refresh first if less than this remains: seconds, or a duration such as
            ``"15m"``; None follows the account's refresh policy, as ``token`` does.
        config: the config file; None: ``$TVMANIAC_REFRESHD_CONFIG``, else the default path.
        environ: the environment to read those variables from; None: ``os.environ``.

    Raises:
        StoreUnavailable: the keyring is unavailable or locked (exit code 69).
        TransientError: network, 429, 5xx, timeout; try again later (75).
        SessionRejected: no login, or the provider rejected it; run `login` (77).
        ConfigError, ClientRejected: the configuration is invalid (78).
        RefreshdError: any other expected failure (its ``exit_code`` says which).
    """
    return get_token_info(account, min_valid=min_valid, config=config, environ=environ).access_token


def get_token_info(
    account: str | None = None,
    *,
    min_valid: int | str | None = None,
    config: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Token:
    """As ``get_token``, with the account, token type and expiry (what `token --json` prints)."""
    from tvmaniac_refreshd import quick_token  # noqa: PLC0415

    environment = os.environ if environ is None else dict(environ)
    try:
        seconds = _seconds(min_valid)
        config_text = None if config is None else os.fspath(config)
        found = quick_token.stored_token(config_text, account, seconds, environment)
        if found is None:
            found = _full_path(account, seconds, config_text, environment)
    except RefreshdError as exc:
        exc.args = (_in_python_words(str(exc)),)
        raise
    name, access_token, token_type, expires_at = found
    return Token(name, access_token, token_type, _utc(expires_at))


def _utc(timestamp: int) -> datetime.datetime:
    import datetime  # noqa: PLC0415  # not at import: the import costs only the error tree

    return datetime.datetime.fromtimestamp(timestamp, tz=datetime.UTC)


def _in_python_words(message: str) -> str:
    """A message written for the command line, with its options named as this API's arguments
    (`pass --account NAME` is `account=NAME` here)."""
    import re  # noqa: PLC0415

    message = message.replace("point --config or", "pass config= or set")
    return re.sub(
        r"--(account|min-valid|config)(?: (?=\S))?",
        lambda found: found.group(1).replace("-", "_") + "=",
        message,
    )


def _seconds(min_valid: int | str | None) -> int | None:
    if min_valid is None or isinstance(min_valid, int):
        if isinstance(min_valid, int) and (isinstance(min_valid, bool) or min_valid < 0):
            raise UsageError(f"min_valid must be a number of seconds >= 0, not {min_valid!r}")
        return min_valid
    from tvmaniac_refreshd.core.durations import parse_duration  # noqa: PLC0415

    try:
        return parse_duration(min_valid)
    except ValueError as exc:
        raise UsageError(f"min_valid: {exc}") from None


def _full_path(
    account: str | None, min_valid: int | None, config: str | None, environ: Mapping[str, str]
) -> tuple[str, str, str, int]:
    import sys  # noqa: PLC0415

    from tvmaniac_refreshd.core.logs import configure_logging  # noqa: PLC0415
    from tvmaniac_refreshd.runtime.access import valid_document  # noqa: PLC0415
    from tvmaniac_refreshd.runtime.root import Runtime  # noqa: PLC0415

    # Warnings to stderr; a program that set up structlog itself keeps its own setup.
    configure_logging(0, stream=sys.stderr, quiet=True)
    runtime = Runtime(config_file=config, account=account, environ=environ, err=sys.stderr)
    try:
        chosen = runtime.account()
        tokens = valid_document(runtime, chosen, min_valid).tokens
    finally:
        runtime.close()
    return chosen.name, tokens.access_token, tokens.token_type, tokens.expires_at
