"""What a verb is handed: the composition root, plus the command line's options and stdout."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Mapping
from typing import TextIO

from tvmaniac_refreshd.cli.options import Common
from tvmaniac_refreshd.config.settings import Account, Config
from tvmaniac_refreshd.runtime.root import ProviderFactory, Runtime
from tvmaniac_refreshd.storage.store import TokenStore

__all__ = ["App"]


class App(Runtime):
    """The root of one command, with the options before the verb and the stream it prints on."""

    def __init__(
        self,
        common: Common,
        *,
        environ: Mapping[str, str],
        out: TextIO,
        err: TextIO,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        config: Config | None = None,
        store: TokenStore | None = None,
        provider: ProviderFactory | None = None,
        parser: argparse.ArgumentParser | None = None,
    ) -> None:
        super().__init__(
            config_file=common.config,
            account=common.account,
            environ=environ,
            err=err,
            clock=clock,
            sleep=sleep,
            config=config,
            store=store,
            provider=provider,
        )
        self.common = common
        self.out = out
        self._parser = parser
        self._selected: str | None = None  # the account this command acts on, once chosen

    def grammar(self) -> argparse.ArgumentParser:
        """The parser this command line was read with (`completion` describes it)."""
        if self._parser is None:
            raise RuntimeError("this App was made without the command line's parser")
        return self._parser

    def account(self) -> Account:
        """The account to act on; remembered, for the hints that name it."""
        chosen = super().account()
        self._selected = chosen.name
        return chosen

    def warn(self, message: str, *, account: str | None = None) -> None:
        super().warn(self.hint(message, account))

    def problem(self, message: str, *, temporary: bool, account: str | None = None) -> None:
        super().problem(self.hint(message, account), temporary=temporary)

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
