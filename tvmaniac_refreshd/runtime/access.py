"""A valid access token for one account, as `token`, `exec`, `git-credential` and the Python
API hand it out: the same lock, refresh and error rules everywhere."""

from __future__ import annotations

from tvmaniac_refreshd.config.settings import Account
from tvmaniac_refreshd.core.durations import format_duration
from tvmaniac_refreshd.core.errors import TransientError, UnsafeLocation, UsageError
from tvmaniac_refreshd.core.logs import get_logger
from tvmaniac_refreshd.core.policy import refresh_due_at
from tvmaniac_refreshd.core.tokens import TokenDocument, encode_document
from tvmaniac_refreshd.runtime.root import Runtime
from tvmaniac_refreshd.storage import quick_record


def valid_document(runtime: Runtime, account: Account, min_valid: int | None) -> TokenDocument:
    """Return the account's tokens, refreshed first (under the lock) when due.

    Without ``min_valid``, a refresh that fails for a passing reason still returns the
    current, unexpired token with a warning; with it, the failure is raised.

    Raises:
        RefreshdError: each with its exit code (69, 75, 77, 78, ...).
    """
    identity = quick_record.config_identity(str(runtime.config_location))
    refresher = runtime.refresher(account)
    if min_valid is not None:
        _check_reachable(refresher.load(), min_valid)
    try:
        document = refresher.ensure_fresh(min_valid=min_valid).document
    except TransientError as exc:
        document = refresher.load()
        if min_valid is not None or document.tokens.expires_at <= runtime.clock():
            raise
        runtime.warn(f"{exc}; using the current token, which is still valid")
    if min_valid is not None:
        # The provider may just have shortened its lifetime: this refresh was the last one.
        _check_reachable(document, min_valid)
    # An encrypted file costs a systemd-creds call to read: the quick path would gain nothing.
    encrypted = getattr(runtime.store, "encrypted", False)
    if identity is not None and not runtime.config.warnings and not encrypted:
        _remember_decision(runtime, account, document, identity)
    return document


def file_store_dir(runtime: Runtime) -> str | None:
    """Return the file store's directory, or None when the tokens are in the keyring."""
    directory = getattr(runtime.store, "directory", None)
    return None if directory is None else str(directory)


def _check_reachable(document: TokenDocument, min_valid: int) -> None:
    """Refuse a --min-valid that no token of this provider can meet.

    A refresh would not help (the new token lasts as long as the last one did), and spending a
    refresh token on every call for nothing is what this prevents. Asking for the impossible is
    a usage error (2): retrying later (75) would not change the answer.
    """
    lifetime = document.tokens.expires_in
    if min_valid > lifetime:
        raise UsageError(
            f"--min-valid {format_duration(min_valid)} cannot be met: the provider issues "
            f"tokens valid for {format_duration(lifetime)}; ask for at most that"
        )


def _remember_decision(
    runtime: Runtime, account: Account, document: TokenDocument, config: str
) -> None:
    """Let the next plain `token` skip loading the program while this decision holds."""
    try:
        default: str | None = runtime.config.select(None).name
    except UsageError:  # several accounts and none chosen: the quick path must ask the config
        default = None
    try:
        quick_record.remember(
            runtime.environ,
            config=config,
            default_account=default,
            account=account.name,
            document_text=encode_document(document),
            fresh_until=refresh_due_at(document.tokens, account.refresh, salt=account.name),
            file_store=file_store_dir(runtime),
        )
    except (OSError, UnsafeLocation) as exc:  # only a speed-up is lost
        get_logger(account=account.name).debug("token.not_remembered", error=str(exc))
