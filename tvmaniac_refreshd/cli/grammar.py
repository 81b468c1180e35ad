"""What every verb's parser shares: the global options, the exit codes, the duration type, and
the ``Verb`` each verb module declares itself with."""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from tvmaniac_refreshd import __version__
from tvmaniac_refreshd.cli.options import from_namespace
from tvmaniac_refreshd.core.durations import parse_duration
from tvmaniac_refreshd.core.errors import EXIT_MEANINGS
from tvmaniac_refreshd.core.locations import APP

if TYPE_CHECKING:
    from tvmaniac_refreshd.cli.app import App


def _exit_codes() -> str:
    lines = ["exit codes:"]
    for code, meaning in EXIT_MEANINGS:
        lines += textwrap.wrap(
            meaning.replace("`", ""),
            width=78,
            initial_indent=f"  {code:<4}",
            subsequent_indent=" " * 6,
        )
    return "\n".join(lines) + "\n"


# The epilog of every --help: the same table as the man page and the reference.
EXIT_CODES = _exit_codes()


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions keep their own line breaks and indented examples, and their prose lines
    are wrapped to the terminal's width."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        lines = []
        for line in text.splitlines():
            if not line.strip() or line.startswith(" ") or line.startswith("exit codes:"):
                lines.append(indent + line)
            else:
                lines += textwrap.wrap(line, width, initial_indent=indent, subsequent_indent=indent)
        return "\n".join(lines)


Options = TypeVar("Options")


def no_arguments(_: argparse.ArgumentParser) -> None:
    """For a verb that takes no arguments of its own."""


@dataclass(frozen=True)
class Verb(Generic[Options]):
    """One verb: its name ("login", or "service install" for a group's action), its help, its
    arguments, the typed options they fill (a field per argparse ``dest``), and its run function.
    """

    name: str
    summary: str
    options: type[Options]
    run: Callable[[App, Options], int]
    arguments: Callable[[argparse.ArgumentParser], None] = no_arguments
    details: str = ""

    def __call__(self, app: App, namespace: argparse.Namespace) -> int:
        return self.run(app, from_namespace(self.options, namespace))


@dataclass(frozen=True)
class Group:
    """A verb whose actions are verbs of their own (``service install``, ``config check``)."""

    name: str
    summary: str
    details: str = ""


def duration_arg(text: str) -> int:
    """An argparse type: a duration such as 90s, 15m or 5h, in seconds."""
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def action(
    group: argparse._SubParsersAction[Any],
    name: str,
    summary: str,
    details: str = "",
) -> argparse.ArgumentParser:
    """Add verb (or a verb's action) ``name`` to ``group``, with the global options."""
    parser: argparse.ArgumentParser = group.add_parser(
        name,
        help=summary,
        description=f"{summary}\n\n{details}".strip(),
        epilog=EXIT_CODES,
        formatter_class=HelpFormatter,
    )
    add_global_options(parser)
    return parser


def add_global_options(parser: argparse.ArgumentParser, *, top: bool = False) -> None:
    """Add --config, --account, -v and -V to ``parser``: the top level, or one verb's parser.

    The options may stand before or after the verb. A verb's parser leaves an option it was
    not given unset (SUPPRESS), so that it never overwrites what came before the verb.
    """
    unset: dict[str, Any] = {} if top else {"default": argparse.SUPPRESS}
    parser.add_argument(
        "--config",
        metavar="PATH",
        help="config file (default: $TVMANIAC_REFRESHD_CONFIG, else "
        "$XDG_CONFIG_HOME/tvmaniac-refreshd/config.toml)",
        **unset,
    )
    parser.add_argument(
        "--account",
        metavar="NAME",
        help="account to act on (default: $TVMANIAC_REFRESHD_ACCOUNT, else the config's "
        "default_account, else the only account, else 'default')",
        **unset,
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        help="show log records on stderr, down to debug level",
        **({"default": 0} if top else unset),
    )
    parser.add_argument(
        "-V",
        "--version",
        action="version",
        version=f"{APP} {__version__}",
        help="print the version",
    )
