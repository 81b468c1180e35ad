"""Every path of ours on disk, named once: the config file, the state directory and all in it.

The rule (README "One user, one state"): one state directory per user, whatever the caller's
environment. Every caller of one user (a shell, cron's ``env -i``, ``su -``, ``sudo -u``, ssh,
the systemd unit, the launchd agent, git, a mail client, the Python API) must take the same
lock for the same account and read the same state, so the place is derived from what they all
share, the user: ``<home>/.local/state/tvmaniac-refreshd`` (macOS: ``<home>/Library/Application
Support/tvmaniac-refreshd``), with ``<home>`` from ``$HOME`` when that is a directory of this
user, else from the password database. Optional variables that some callers have and others do
not (``XDG_STATE_HOME``, ``XDG_RUNTIME_DIR``, systemd's ``STATE_DIRECTORY``) are not used: a
lock in ``$XDG_RUNTIME_DIR`` was one lock for the shell and another for cron, and the same
refresh token was spent twice. ``disagreements`` names what another caller would see
differently, for `config check` and `status`.

Strings and ``os`` only: the quick `token` path (quick_token.py) reads through this module and
is measured in milliseconds.

    <state>/<account>.json          the account's state (storage/state.py)
    <state>/.<account>.lock         the flock guarding its read-modify-write
    <state>/_quick-token.json       the quick `token` path's record (storage/quick_record.py)
    <state>/_token.sock             the daemon's answers to `token` (storage/token_socket.py)
    <state>/daemon-<digest>.pid     the lock and PID of the daemon serving one config
    <state>/locks/<account>.lock    the account's refresh lock, shared by every process
    <state>/locks/in-use/<account>.lock  held shared by each job using the account's token
    <state>/jobs/<job>.json         each [jobs.NAME]'s last result and next run (job_state.py)
    <state>/tokens/<account>.json   the file store (storage/file_store.py), and beside it
                 <account>.client_secret, each with ".cred" when encrypted
"""

from __future__ import annotations

import os
import pwd
import stat
import sys
from collections.abc import Mapping

from tvmaniac_refreshd.core.locations import APP

# Not typing's: its import costs the quick `token` path 2 ms (mypy and ruff read it alike).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path

QUICK_RECORD = "_quick-token.json"  # account names start with a letter or digit
TOKEN_SOCKET = "_token.sock"
LOCKS = "locks"
TOKENS = "tokens"
STATE_SUFFIX = ".json"
# The file store's names: <tokens>/<account>.json, <account>.client_secret, each + ".cred"
# when encrypted with systemd-creds (so never mistaken for a plain document).
DOCUMENT_SUFFIX = ".json"
SECRET_SUFFIX = ".client_secret"
ENCRYPTED_SUFFIX = ".cred"


def _owned_directory(path: str) -> bool:
    try:
        info = os.stat(path)
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid()


def account_home() -> str | None:
    """Return this user's home directory as the password database has it, or None."""
    try:
        return pwd.getpwuid(os.geteuid()).pw_dir or None
    except KeyError:  # a uid without an entry (a container's --user)
        return None


def home_directory(environ: Mapping[str, str]) -> str:
    """Return ``$HOME`` if it is an absolute directory of this user, else the account's home.

    ``sudo -u other`` may keep the caller's ``HOME``: that directory is not ours, so the other
    user's own is used, as cron and its service manager would.
    """
    home = environ.get("HOME", "")
    if os.path.isabs(home) and _owned_directory(home):
        return home
    return account_home() or home or os.path.expanduser("~")


def config_file(
    explicit: str | None, environ: Mapping[str, str], platform: str = sys.platform
) -> str:
    """Return the config file: ``--config``, else the environment, else XDG."""
    if explicit:
        return explicit
    if environ.get("TVMANIAC_REFRESHD_CONFIG"):
        return environ["TVMANIAC_REFRESHD_CONFIG"]
    # The home the state follows: `sudo -u` keeping the caller's HOME must not read the
    # caller's config any more than it writes the caller's state.
    home = home_directory(environ)
    if platform == "darwin":
        return os.path.join(home, "Library", "Application Support", APP, "config.toml")
    base = environ.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
    return os.path.join(base, APP, "config.toml")


def config_elsewhere(environ: Mapping[str, str], platform: str = sys.platform) -> str | None:
    """Return this caller's default config file when cron or the service would read another.

    ``XDG_CONFIG_HOME`` moves the default for a shell that has it; cron's ``env -i`` and the
    service manager do not have it, so they look in ``~/.config``. ``service install`` writes
    the returned path into the unit, and ``disagreements`` says it for cron.
    """
    mine = config_file(None, {**environ, "TVMANIAC_REFRESHD_CONFIG": ""}, platform)
    theirs = config_file(None, {"HOME": home_directory(environ)}, platform)
    return mine if os.path.realpath(mine) != os.path.realpath(theirs) else None


def state_under(home: str, platform: str = sys.platform) -> str:
    """Return the state directory of the user whose home is ``home``."""
    if platform == "darwin":
        return os.path.join(home, "Library", "Application Support", APP)
    return os.path.join(home, ".local", "state", APP)


def state_directory(environ: Mapping[str, str], platform: str = sys.platform) -> str:
    """Return the directory for non-secret state, locks and the file store (module docstring)."""
    return state_under(home_directory(environ), platform)


def state_file(state: str, account: str) -> str:
    return os.path.join(state, account + STATE_SUFFIX)


def state_lock(state: str, account: str) -> str:
    return os.path.join(state, f".{account}.lock")


def quick_record(state: str) -> str:
    return os.path.join(state, QUICK_RECORD)


def token_socket(state: str) -> str:
    return os.path.join(state, TOKEN_SOCKET)


def lock_directory(state: str) -> str:
    return os.path.join(state, LOCKS)


def lock_file(locks: str, account: str) -> str:
    """Return the refresh lock of ``account`` in the lock directory ``locks``."""
    return os.path.join(locks, f"{account}.lock")


def in_use_file(locks: str, account: str) -> str:
    """Return the in-use lock of ``account`` (storage/locks.py) in the lock directory."""
    return os.path.join(locks, "in-use", f"{account}.lock")


def token_directory(state: str) -> str:
    return os.path.join(state, TOKENS)


def token_file(tokens: str, account: str) -> str:
    """Return the plain file store's document of ``account`` in the directory ``tokens``."""
    return os.path.join(tokens, account + DOCUMENT_SUFFIX)


def daemon_pid_file(state: str, config_source: str) -> str:
    """Return the lock file of the daemon that serves the config at ``config_source``."""
    import hashlib  # noqa: PLC0415 (2 ms the quick path does not need)

    digest = hashlib.sha256(os.path.realpath(config_source).encode()).hexdigest()[:12]
    return os.path.join(state, f"daemon-{digest}.pid")


def credentials_directory(environ: Mapping[str, str]) -> str | None:
    """Return systemd's ``$CREDENTIALS_DIRECTORY`` (LoadCredential=), if this process has one."""
    return environ.get("CREDENTIALS_DIRECTORY") or None


class Layout:
    """The paths above as ``Path`` objects, for everything but the quick path."""

    def __init__(self, state: str) -> None:
        from pathlib import Path  # noqa: PLC0415 (not on the quick path)

        self.state = Path(state)
        self.locks = Path(lock_directory(state))
        self.tokens = Path(token_directory(state))
        self.quick_record = Path(quick_record(state))
        self.jobs = self.state / "jobs"

    @classmethod
    def of(cls, environ: Mapping[str, str], platform: str = sys.platform) -> Layout:
        """Return the layout of this user's state directory (module docstring)."""
        return cls(state_directory(environ, platform))

    def state_file(self, account: str) -> Path:
        return self.state / (account + STATE_SUFFIX)

    def state_lock(self, account: str) -> Path:
        return self.state / f".{account}.lock"

    def account_lock(self, account: str) -> Path:
        return self.locks / os.path.basename(lock_file(str(self.locks), account))

    def daemon_pid(self, config_source: str) -> Path:
        return self.state / os.path.basename(daemon_pid_file(str(self.state), config_source))


def config_path(
    explicit: str | None, environ: Mapping[str, str], platform: str = sys.platform
) -> Path:
    """Return ``config_file`` as a ``Path``."""
    from pathlib import Path  # noqa: PLC0415

    return Path(config_file(explicit, environ, platform))


def disagreements(environ: Mapping[str, str], platform: str = sys.platform) -> list[str]:
    """Return, as sentences, where another caller of this user would look for the state.

    The state directory is the same for every caller by the rule above; what can still differ
    is a variable this caller has that the user may expect to matter (``XDG_STATE_HOME``;
    ``XDG_CONFIG_HOME``, which moves the default config where cron does not look), or a
    ``$HOME`` that is not the account's own home, which cron and the service manager use.
    """
    state = state_directory(environ, platform)
    notes = []
    xdg = environ.get("XDG_STATE_HOME")
    if xdg and platform != "darwin" and os.path.join(xdg, APP) != state:
        notes.append(
            f"XDG_STATE_HOME is set ({xdg}), but {APP} keeps its state in {state} for every "
            "caller (cron and the service do not see this variable); "
            f"{os.path.join(xdg, APP)} is not used"
            + (
                f". It exists: move what you need from it into {state}"
                if os.path.isdir(os.path.join(xdg, APP))
                else ""
            )
        )
    moved = config_elsewhere(environ, platform)
    if moved is not None and os.path.isfile(moved):
        notes.append(
            f"XDG_CONFIG_HOME is set ({environ.get('XDG_CONFIG_HOME')}), so the default config "
            f"here is {moved}, but cron does not see this variable and would read "
            f"{config_file(None, {'HOME': home_directory(environ)}, platform)}; in a crontab "
            f"pass --config {moved} (`service install` writes it into the unit)"
        )
    own = account_home()
    if own is not None and os.path.realpath(state_under(own, platform)) != os.path.realpath(state):
        other = state_under(own, platform)
        if os.path.isdir(other):
            notes.append(
                f"HOME ({environ.get('HOME')}) is not this user's home in the password "
                f"database ({own}): this command uses {state}, while cron and the service "
                f"use {other}; run both with the same HOME"
            )
    return notes
