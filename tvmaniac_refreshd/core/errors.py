"""The project's error tree; each third-party exception is translated into it exactly once.

::

    RefreshdError                 base; str(exc) is a user-facing sentence; .exit_code (sysexits)
    ├── UsageError                2   a command line that cannot be acted on
    ├── ConfigError               78  invalid configuration; .source and every .problems at once
    ├── ClientRejected            78  the provider rejected our client credentials (invalid_client)
    ├── StoreUnavailable          69  keyring missing, locked, hanging, or an insecure backend
    ├── StoreCorrupt              1   the keyring item is not ours or unreadable; never overwritten
    ├── LoginElsewhere            1   the stored login was made for another client or endpoint
    ├── StoreConflict             1   both stores hold an account, differing; `--force` keeps newer
    ├── UnsafeLocation            78  a state/lock/runtime directory someone else owns or can write
    ├── TransientError            75  network, timeout, 408/429/5xx, HTML: try again; .retry_after
    │   └── StateUnwritable       75  the state directory cannot be written (full disk, quota)
    ├── SessionRejected           77  the refresh token was rejected, or none stored: `login`
    │   └── NotLoggedIn           77  no tokens are stored for the account
    ├── LoginFailed               1   the device login was denied, expired or abandoned
    ├── ProviderRefused           1   any other refusal by the provider; the tokens are kept
    │   ├── AccountLocked         1   the provider locked or deactivated the user's account
    │   └── ProviderIncompatible  1   a 2xx answer we cannot read: a dialect we do not speak
    │       └── WrongEndpoint     78  ... that is no answer of this kind at all: fix the URL
    ├── NotConfigured             1   the config lacks what this step needs (e.g. revocation_url)
    ├── AlreadyRunning            1   another daemon serves the same config
    └── ServiceError              1   systemctl/launchctl failed
        └── ServiceUnavailable    69  no service manager for this user (no user bus, wrong OS)

Programming errors stay plain exceptions: they are bugs, not outcomes.
"""

from __future__ import annotations

from collections.abc import Sequence

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_STORE_UNAVAILABLE = 69  # EX_UNAVAILABLE: also a missing service manager
EXIT_TEMPORARY = 75
EXIT_REAUTH = 77
EXIT_CONFIG = 78

# What each exit code means: the one table `--help`, the man page and docs/reference/exit-codes.md
# show (a unit test keeps the page's table equal to this one).
EXIT_MEANINGS: tuple[tuple[int, str], ...] = (
    (EXIT_OK, 'success (including "nothing was due")'),
    (
        EXIT_FAILURE,
        "other failure (denied login, damaged keyring item, a login made for another client or "
        "endpoint, account locked at Trakt, a provider answer that does not fit: the message "
        "names the field and what was received)",
    ),
    (EXIT_USAGE, "usage error"),
    (
        EXIT_STORE_UNAVAILABLE,
        "the keyring is unavailable or locked (the message says how to fix it)",
    ),
    (
        EXIT_TEMPORARY,
        "temporary failure (network, DNS, TLS, timeout, 408, 429, 5xx, Cloudflare 52x, HTML "
        "instead of JSON, `temporarily_unavailable`): try again later; tokens kept",
    ),
    (
        EXIT_REAUTH,
        "the provider rejected the session (`invalid_grant`, `invalid_token`, "
        "`interaction_required`, `consent_required`), none is stored, or the stored one was "
        "made for another client or endpoint: run `login`",
    ),
    (
        EXIT_CONFIG,
        "invalid configuration (including a combination the provider refuses), the provider "
        "rejected the client credentials (`invalid_client`), or an endpoint answered with "
        "something else than its kind of answer",
    ),
)


class RefreshdError(Exception):
    """Base of every expected failure; the message is meant for the user."""

    exit_code = EXIT_FAILURE

    def __init__(self, message: str, *, account: str | None = None) -> None:
        super().__init__(message)
        self.account = account


class UsageError(RefreshdError):
    """The command line names something that does not exist or cannot be combined."""

    exit_code = EXIT_USAGE


class ConfigError(RefreshdError):
    """The configuration is invalid; every problem is listed, each naming its key."""

    exit_code = EXIT_CONFIG

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = list(problems)
        lines = "\n".join(f"  - {problem}" for problem in self.problems)
        super().__init__(f"invalid configuration in {source}:\n{lines}")


class ClientRejected(RefreshdError):
    """The provider does not accept our client_id/client_secret: a configuration problem."""

    exit_code = EXIT_CONFIG


class StoreUnavailable(RefreshdError):
    """The secure store cannot be used right now; tokens are untouched."""

    exit_code = EXIT_STORE_UNAVAILABLE


class StoreMisconfigured(StoreUnavailable):
    """The configured store cannot work on this system (encryption it does not offer): a
    configuration problem, never a reason to store in plain text instead."""

    exit_code = EXIT_CONFIG


class StoreCorrupt(RefreshdError):
    """The keyring holds something under our name that we cannot read; it is left alone."""


class LoginElsewhere(RefreshdError):
    """The stored login was made for another client or endpoint than the config names; `login`
    and `logout` leave it alone unless told (`--replace`, `--local`)."""


class StoreConflict(RefreshdError):
    """Both stores hold an account's item, and they differ: moving one over the other could
    replace a live token pair with a spent one, so nothing moves without ``--force``."""


class UnsafeLocation(RefreshdError):
    """A directory or file we would use is owned by someone else, writable by others, or a link.

    Another local user could plant links or hold locks there; we refuse rather than follow.
    """

    exit_code = EXIT_CONFIG


class TransientError(RefreshdError):
    """A failure that should pass by itself; the stored tokens are kept."""

    exit_code = EXIT_TEMPORARY

    def __init__(
        self, message: str, *, account: str | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, account=account)
        self.retry_after = retry_after


class TokenInUse(TransientError):
    """A job runs with the account's access token: its refresh waits until the job ends."""


class SessionRejected(RefreshdError):
    """The provider no longer accepts the session, or there is none: `login` is needed."""

    exit_code = EXIT_REAUTH


class NotLoggedIn(SessionRejected):
    """No tokens are stored for the account: a normal state, not a failure of the session."""


class LoginFailed(RefreshdError):
    """The device login did not complete (denied, expired, or the code was unusable)."""


class ProviderRefused(RefreshdError):
    """The provider said no for a reason none of the other errors name; tokens are kept."""


class AccountLocked(ProviderRefused):
    """The provider reports the user's account as locked or deactivated (Trakt's 423)."""


class ProviderIncompatible(ProviderRefused):
    """The provider answered 2xx with JSON we cannot use: a compatibility problem, which
    waiting does not fix. The message names each field and what was received."""


class WrongEndpoint(ProviderIncompatible):
    """The answer has none of the fields of the answer asked for: the config points the
    request at another endpoint."""

    exit_code = EXIT_CONFIG


class NotConfigured(RefreshdError):
    """The config does not set up what this step needs (an endpoint the provider lacks)."""


class AlreadyRunning(RefreshdError):
    """A daemon for the same config already holds its instance lock."""


class ServiceError(RefreshdError):
    """The service manager refused an operation."""


class ServiceUnavailable(ServiceError):
    """There is no service manager to talk to: no systemd user instance, or another OS."""

    exit_code = EXIT_STORE_UNAVAILABLE


class StateUnwritable(TransientError):
    """The state directory cannot be written (full disk, quota, file size limit).

    The tokens in the keyring are untouched; a token that is still valid can still be used.
    """
