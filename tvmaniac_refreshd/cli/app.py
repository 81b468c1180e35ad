"""What a verb is handed: the composition root, plus the command line's options and stdout."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Mapping
from typing import TextIO

from tvmaniac_refreshd.cli.options import Common
from tvmaniac_refreshd.config.settings import Config
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

    def grammar(self) -> argparse.ArgumentParser:
        """The parser this command line was read with (`completion` describes it)."""
        if self._parser is None:
            raise RuntimeError("this App was made without the command line's parser")
        return self._parser
