"""The wiring of one command: config, keyring, state files, clock and HTTP, made on first use."""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, TextIO

from tvmaniac_refreshd.cli.options import Common
from tvmaniac_refreshd.config.settings import Account, Config, load_config
from tvmaniac_refreshd.core.locations import APP, systemd_booted
from tvmaniac_refreshd.core.logs import journal_prefix, shown
from tvmaniac_refreshd.daemon.refresher import Refresher
from tvmaniac_refreshd.storage.credentials import resolve_client_secret
from tvmaniac_refreshd.storage.paths import config_path, lock_dir, state_dir
from tvmaniac_refreshd.storage.state import StateFiles
from tvmaniac_refreshd.storage.store import TokenStore

if TYPE_CHECKING:
    import httpx

    from tvmaniac_refreshd.providers.base import Provider

__all__ = ["ACCOUNT_ENV", "App"]

ACCOUNT_ENV = "TVMANIAC_REFRESHD_ACCOUNT"  # the account when --account is not given

# syslog priorities of the plain lines a oneshot writes to journald's stream (sd-daemon(3)).
ERROR = 3
WARNING = 4


class App:
    """The wiring for one command: config, keyring, state files, clock, HTTP."""

    def __init__(
        self,
        common: Common,
        *,
        environ: Mapping[str, str],
        out: TextIO,
        err: TextIO,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.common = common
        self.environ = environ
        self.out = out
        self.err = err
        self.clock = clock
        self.sleep = sleep
        self._config: Config | None = None
        self._store: TokenStore | None = None
        self._http: httpx.Client | None = None
        self._http_lock = threading.Lock()
        self._selected: str | None = None  # the account this command acts on, once chosen

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(config_path(self.common.config, self.environ))
            for warning in self._config.warnings:
                self.warn(warning)
        return self._config

    @property
    def store(self) -> TokenStore:
        if self._store is None:
            self._store = self.make_store(self.config.store.backend)
        return self._store

    def make_store(self, backend: str) -> TokenStore:
        """Return the store named ``backend`` ("keyring" or "file"), as the config would."""
        if backend == "file":
            from tvmaniac_refreshd.storage.file_store import (  # noqa: PLC0415
                FileStore,
                token_directory,
            )

            cipher = None
            if self.config.store.encrypt == "systemd-creds":
                from tvmaniac_refreshd.storage.systemd_creds import SystemdCreds  # noqa: PLC0415

                cipher = SystemdCreds()  # exit 78 here if this system cannot: no plain text
            return FileStore(token_directory(state_dir(self.environ)), cipher=cipher)
        from tvmaniac_refreshd.storage.keyring_store import (  # noqa: PLC0415
            KeyringStore,
            default_backend,
        )
        from tvmaniac_refreshd.storage.unlock_advice import Machine  # noqa: PLC0415

        environ = self.environ
        # No desktop to unlock the keyring in: the advice gives the shell recipe instead.
        headless = sys.platform.startswith("linux") and not (
            environ.get("DISPLAY") or environ.get("WAYLAND_DISPLAY")
        )
        timeout = self.config.store.timeout
        return KeyringStore(
            self.config.store,
            lambda: default_backend(environ, timeout=timeout),
            machine=Machine(
                headless=headless,
                systemd=systemd_booted(),
                daemon_running=lambda: self.daemon_pid() is not None,
            ),
        )

    def daemon_pid(self) -> int | None:
        """The PID of the daemon that serves this config, if one runs (this one, under `run`)."""
        from tvmaniac_refreshd.daemon import instance  # noqa: PLC0415

        return instance.running_pid(instance.lock_path(state_dir(self.environ), self.config.source))

    @property
    def states(self) -> StateFiles:
        return StateFiles(state_dir(self.environ))

    def warn(self, message: str, *, account: str | None = None) -> None:
        text = shown(self.hint(message, account))
        self.err.write(f"{journal_prefix(WARNING)}{APP}: warning: {text}\n")

    def problem(self, message: str, *, temporary: bool, account: str | None = None) -> None:
        """Print a failure on stderr; in the journal, a warning if temporary, else an error."""
        priority = WARNING if temporary else ERROR
        self.err.write(f"{journal_prefix(priority)}{APP}: {shown(self.hint(message, account))}\n")

    def hint(self, text: str, account: str | None = None) -> str:
        """Return ``text`` with each command it suggests aimed at this config and ``account``
        (default: the account this command acts on); see hints.py.

        What the command line chose is repeated; what the environment chose applies again by
        itself in the same shell.
        """
        from tvmaniac_refreshd.cli.hints import complete  # noqa: PLC0415

        return complete(text, config=self.common.config, account=self._hint_account(account))

    def _hint_account(self, account: str | None) -> str | None:
        """The --account a suggested command needs: the one given, or any account of a config
        with several, where the command would otherwise act on another account or ask which."""
        name = account or self._selected
        if name is None:
            return None
        several = self._config is not None and len(self._config.accounts) > 1
        return name if self.common.account is not None or several else None

    @property
    def account_name(self) -> str | None:
        """The account the user named: --account, else $TVMANIAC_REFRESHD_ACCOUNT, else None."""
        return self.common.account or self.environ.get(ACCOUNT_ENV) or None

    def account(self) -> Account:
        """The account to act on (config.select documents the order)."""
        chosen = self.config.select(self.account_name)
        self._selected = chosen.name
        return chosen

    def client(self, account: Account) -> Provider:
        from tvmaniac_refreshd.providers.factory import make_provider  # noqa: PLC0415
        from tvmaniac_refreshd.providers.http import make_http_client  # noqa: PLC0415

        with self._http_lock:  # the daemon's worker threads share one connection pool
            if self._http is None:
                self._http = make_http_client(self.config.http)
        secret = resolve_client_secret(account, self.environ, self.store)
        return make_provider(self._http, account, secret.value)

    def refresher(self, account: Account) -> Refresher:
        return Refresher(
            account,
            store=self.store,
            states=self.states,
            lock_dir=lock_dir(self.environ),
            lock_timeout=self.config.store.lock_timeout,
            client=lambda: self.client(account),
            clock=self.clock,
            sleep=self.sleep,
        )

    @contextlib.contextmanager
    def lock(self, account: Account) -> Iterator[None]:
        from tvmaniac_refreshd.storage.keyring_store import account_lock  # noqa: PLC0415

        with account_lock(
            lock_dir(self.environ), account.name, timeout=self.config.store.lock_timeout
        ):
            yield

    def adopt(self, config: Config) -> None:
        """Use ``config`` from now on (the daemon after SIGHUP)."""
        self._config = config

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
