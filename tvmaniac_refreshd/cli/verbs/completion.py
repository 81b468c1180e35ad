"""`completion bash|zsh|fish`: print a shell completion script for every verb and option."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Literal

from tvmaniac_refreshd.cli.app import App
from tvmaniac_refreshd.cli.grammar import Verb
from tvmaniac_refreshd.core.errors import EXIT_OK


@dataclass(frozen=True)
class CompletionOptions:
    shell: Literal["bash", "zsh", "fish"] = "bash"


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("shell", choices=("bash", "zsh", "fish"), help="the shell")


def run(app: App, options: CompletionOptions) -> int:
    from tvmaniac_refreshd.cli.completion import script  # noqa: PLC0415

    # The parser that read this very command line describes every verb, this one included.
    app.out.write(script(app.grammar(), options.shell))
    return EXIT_OK


VERB = Verb(
    "completion",
    "Print a shell completion script for every verb and option.",
    CompletionOptions,
    run,
    arguments,
    "Install it as your own user (no root):\n"
    'bash: add to ~/.bashrc: eval "$(tvmaniac-refreshd completion bash)"\n'
    "zsh:  mkdir -p ~/.zfunc && tvmaniac-refreshd completion zsh > ~/.zfunc/_tvmaniac-refreshd\n"
    "      and in ~/.zshrc, before compinit: fpath=(~/.zfunc $fpath)\n"
    "fish: mkdir -p ~/.config/fish/completions && tvmaniac-refreshd completion fish \\\n"
    "          > ~/.config/fish/completions/tvmaniac-refreshd.fish\n"
    "Account names after --account come from `config accounts` (with the --config typed).",
)
