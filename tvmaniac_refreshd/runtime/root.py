"""The composition root: one object owns the current config and builds everything else from it.

Each piece is made on first use, so a command pays only for what it touches: `status` makes
no HTTP client, `token` on a fresh token builds no provider. A test hands in its own config,
store or provider factory, and every verb runs in process against them.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from tvmaniac_refreshd.config.settings import Account, Config, StoreBackend, load_config
from tvmaniac_refreshd.core.locations import ACCOUNT_ENV, APP
from tvmaniac_refreshd.core.logs import get_logger, journal_prefix, shown
from tvmaniac_refreshd.daemon.refresher import Refresher
from tvmaniac_refreshd.daemon.unsaved import UnsavedPairs
from tvmaniac_refreshd.providers.base import Provider
from tvmaniac_refreshd.storage.credentials import resolve_client_secret
from tvmaniac_refreshd.storage.job_state import JobStates
from tvmaniac_refreshd.storage.layout import Layout, config_path, disagreements
from tvmaniac_refreshd.storage.state import StateFiles
from tvmaniac_refreshd.storage.store import TokenStore

if TYPE_CHECKING:
    import httpx

    from tvmaniac_refreshd.service.base import ServiceManager

__all__ = ["ACCOUNT_ENV", "ProviderFactory", "Runtime"]

# syslog priorities of the plain lines a oneshot writes to journald's stream (sd-daemon(3)).
ERROR = 3
WARNING = 4

# Builds the provider of one account, given its client secret (None: the account has none).
ProviderFactory = Callable[[Account, str | None], Provider]


class Runtime:
    """The config, the store, the state files, the providers and the refreshers of one process."""

    def __init__(
        self,
        *,
        config_file: str | None = None,
        account: str | None = None,
        environ: Mapping[str, str],
        err: TextIO,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        config: Config | None = None,
        store: TokenStore | None = None,
        provider: ProviderFactory | None = None,
    ) -> None:
        self.config_file = config_file
        self.environ = environ
        self.err = err
        self.clock = clock
        self.sleep = sleep
        self._account = account
        self._config = config
        self._store = store
        self._states: StateFiles | None = None
        self._provider = provider
        self._http: httpx.Client | None = None
        # New pairs the store could not keep yet, across every refresher of this process.
        self.unsaved = UnsavedPairs()
        self._http_lock = threading.Lock()

    @property
    def config_location(self) -> Path:
        """The config file: the one named, else $TVMANIAC_REFRESHD_CONFIG, else the default."""
        return config_path(self.config_file, self.environ)

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(self.config_location)
            for warning in self._config.warnings:
                self.warn(warning)
        return self._config

    def adopt(self, config: Config) -> None:
        """Use ``config`` from now on (the daemon after SIGHUP, `config check` after loading)."""
        self._config = config

    def reload(self) -> Config:
        """Read the config file again and adopt it.

        Raises:
            ConfigError: the file is invalid; the current config is kept.
        """
        config = load_config(Path(self.config.source))
        self.adopt(config)
        return config

    @property
    def store(self) -> TokenStore:
        if self._store is None:
            self._store = self.make_store(self.config.store.backend)
        return self._store

    def make_store(self, backend: StoreBackend) -> TokenStore:
        """Return the store named ``backend`` ("keyring" or "file"), as the config would."""
        if backend == "file":
            from tvmaniac_refreshd.storage.file_store import FileStore  # noqa: PLC0415

            self.states.check()  # the state directory, the file store's parent: exit 78 if unsafe
            cipher = None
            if self.config.store.encrypt == "systemd-creds":
                from tvmaniac_refreshd.storage.systemd_creds import SystemdCreds  # noqa: PLC0415

                cipher = SystemdCreds()  # exit 78 here if this system cannot: no plain text
            return FileStore(self.layout.tokens, cipher=cipher)
        from tvmaniac_refreshd.storage.keyring_store import (  # noqa: PLC0415
            KeyringStore,
            default_backend,
        )
        from tvmaniac_refreshd.storage.secret_service_owner import find_owner  # noqa: PLC0415
        from tvmaniac_refreshd.storage.unlock_advice import Machine  # noqa: PLC0415

        environ = self.environ
        # No desktop to unlock the keyring in: the advice gives the shell recipe instead.
        headless = sys.platform.startswith("linux") and not (
            environ.get("DISPLAY") or environ.get("WAYLAND_DISPLAY")
        )
        timeout = self.config.store.timeout
        return KeyringStore(
            self.config.store,
            lambda: default_backend(environ, timeout=timeout, interactive=not headless),
            headless=headless,
            owner=lambda: find_owner(environ, with_version=False),
            machine=Machine(
                headless=headless,
                systemd=_systemd_booted(),
                daemon_running=lambda: self.daemon_pid() is not None,
            ),
        )

    @property
    def layout(self) -> Layout:
        """Where this user's state, locks and file store are (storage/layout.py)."""
        return Layout.of(self.environ)

    @property
    def states(self) -> StateFiles:
        """The state files, once the whole state directory is checked (exit 78 if unsafe)."""
        if self._states is None:
            self._states = StateFiles(self.layout.state).check()
        return self._states

    def warn_disagreements(self) -> None:
        """Warn where another caller of this user would look for the state (layout.py)."""
        for note in disagreements(self.environ):
            self.warn(note)

    @property
    def job_states(self) -> JobStates:
        """Each job's last result and next run (`job list`), beside the accounts' state files."""
        return JobStates(self.layout.jobs)

    def warn(self, message: str) -> None:
        self.err.write(f"{journal_prefix(WARNING)}{APP}: warning: {shown(message)}\n")

    def problem(self, message: str, *, temporary: bool) -> None:
        """Print a failure on stderr; in the journal, a warning if temporary, else an error."""
        priority = WARNING if temporary else ERROR
        self.err.write(f"{journal_prefix(priority)}{APP}: {shown(message)}\n")

    @property
    def account_name(self) -> str | None:
        """The account named: by the caller, else $TVMANIAC_REFRESHD_ACCOUNT, else None."""
        return self._account or self.environ.get(ACCOUNT_ENV) or None

    def account(self) -> Account:
        """The account to act on (config.select documents the order)."""
        return self.config.select(self.account_name)

    def selected(self, *, every: bool) -> list[Account]:
        """Every account, or the one chosen as for `token` (config.select documents the order)."""
        if every:
            return list(self.config.accounts.values())
        return [self.account()]

    def client(self, account: Account) -> Provider:
        """Return the provider of ``account``; the HTTP client is made on the first call."""
        secret = resolve_client_secret(account, self.environ, self.store).value
        if self._provider is not None:
            return self._provider(account, secret)
        from tvmaniac_refreshd.providers.factory import make_provider  # noqa: PLC0415
        from tvmaniac_refreshd.providers.http import make_http_client  # noqa: PLC0415

        with self._http_lock:  # the daemon's worker threads share one connection pool
            if self._http is None:
                self._http = make_http_client(self.config.http)
        return make_provider(self._http, account, secret)

    def refresher(self, account: Account) -> Refresher:
        """Return a refresher of ``account``; its provider is built only if it must refresh."""
        return Refresher(
            account,
            store=self.store,
            states=self.states,
            lock_dir=self.layout.locks,
            lock_timeout=self.config.store.lock_timeout,
            client=lambda: self.client(account),
            clock=self.clock,
            sleep=self.sleep,
            unsaved=self.unsaved,
        )

    def refreshers(self) -> dict[str, Refresher]:
        """One refresher per configured account, as the daemon is handed them."""
        return {name: self.refresher(account) for name, account in self.config.accounts.items()}

    @contextlib.contextmanager
    def lock(self, account: Account) -> Iterator[None]:
        """Hold the lock of ``account``: the one every process of this user takes for it."""
        from tvmaniac_refreshd.storage.locks import account_lock  # noqa: PLC0415

        with account_lock(self.layout.locks, account.name, timeout=self.config.store.lock_timeout):
            yield

    def tell_daemon(self) -> None:
        """Tell a running daemon for this config that an account changed, so it re-plans now."""
        from tvmaniac_refreshd.daemon import instance  # noqa: PLC0415

        pid = instance.tell(self.layout.daemon_pid(self.config.source))
        if pid is not None:
            get_logger().debug("daemon.told", pid=pid)

    def daemon_pid(self) -> int | None:
        """The pid of the daemon running for this config, if one is."""
        from tvmaniac_refreshd.daemon import instance  # noqa: PLC0415

        return instance.running_pid(self.layout.daemon_pid(self.config.source))

    def service_manager(self) -> ServiceManager:
        """The OS service manager (systemd or launchd) of this machine."""
        from tvmaniac_refreshd.service import manager_for  # noqa: PLC0415

        return manager_for(self.environ)

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None


def _systemd_booted() -> bool:
    from tvmaniac_refreshd.service.base import systemd_booted  # noqa: PLC0415

    return systemd_booted()
