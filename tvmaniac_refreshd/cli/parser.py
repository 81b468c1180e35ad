"""The command line: parse the arguments, run the verb, map errors to exit codes.

Each verb is a module of ``verbs`` (its options, arguments and run function); the root it
runs against is ``app``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from tvmaniac_refreshd.cli.app import App
from tvmaniac_refreshd.cli.grammar import EXIT_CODES, HelpFormatter, action, add_global_options
from tvmaniac_refreshd.cli.options import Common, from_namespace
from tvmaniac_refreshd.cli.usage import UsageParser
from tvmaniac_refreshd.cli.verbs import GROUPS, VERBS
from tvmaniac_refreshd.core.errors import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_TEMPORARY,
    EXIT_USAGE,
    RefreshdError,
)
from tvmaniac_refreshd.core.locations import APP
from tvmaniac_refreshd.core.logs import configure_logging, journal_prefix, redact_text, shown
from tvmaniac_refreshd.storage.session_bus import adopt_session_bus

DESCRIPTION = """\
Keeps a Trakt.tv OAuth session alive: the tokens live in the OS keyring and are refreshed
before they expire, by a systemd/launchd service or by these commands.
--config, --account and -v may stand before or after the verb.

Typical first use:
  tvmaniac-refreshd config init         # write a starter config (asks for the client id)
  tvmaniac-refreshd config set-secret   # store the client secret in the keyring
  tvmaniac-refreshd config check        # is the config and the keyring usable?
  tvmaniac-refreshd login               # device-code login; approve the code in a browser
  tvmaniac-refreshd status              # when does the token expire, when is it refreshed
  tvmaniac-refreshd service install     # keep it fresh in the background (systemd/launchd)
  tvmaniac-refreshd exec -- ./sync.sh   # run a script with $ACCESS_TOKEN set
"""

# The verbs by the name the dispatch uses: "login", "service install".
BY_NAME = {verb.name: verb for verb in VERBS}


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser with every verb and its help, in the registry's order."""
    parser = UsageParser(
        prog=APP,
        description=DESCRIPTION,
        epilog=EXIT_CODES,
        formatter_class=HelpFormatter,
    )
    add_global_options(parser, top=True)
    # Not required: no arguments at all print the help (main does that).
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")
    actions: dict[str, argparse._SubParsersAction[Any]] = {}
    for verb in VERBS:
        group_name, _, action_name = verb.name.rpartition(" ")
        if not group_name:
            verb.arguments(action(verbs, verb.name, verb.summary, verb.details))
            continue
        if group_name not in actions:
            group = GROUPS[group_name]
            holder = action(verbs, group.name, group.summary, group.details)
            actions[group_name] = holder.add_subparsers(
                dest=f"{group_name}_verb", metavar="ACTION", required=True
            )
        verb.arguments(action(actions[group_name], action_name, verb.summary, verb.details))
    return parser


def split_exec(argv: Sequence[str]) -> tuple[list[str], list[str] | None]:
    """Return (what argparse reads, the command after `--`) for an `exec` command line.

    argparse would take CMD's own options for ours; everything after exec's `--` is CMD's.
    For any other verb, or without `--`, the command is None.
    """
    words = list(argv)
    takes_value = {"--config", "--account"}
    index = 0
    while index < len(words):
        word = words[index]
        if word in takes_value:
            index += 2
            continue
        if word.startswith("-"):
            index += 1
            continue
        if word != "exec":
            return words, None
        if "--" not in words[index:]:
            return words, None
        cut = words.index("--", index)
        return words[:cut], words[cut + 1 :]
    return words, None


@dataclass(frozen=True)
class Parsed:
    """A command line read: the verb's registry name ("service install"), and its namespace."""

    verb: str | None  # None: no verb at all
    namespace: argparse.Namespace


def parse(parser: argparse.ArgumentParser, argv: Sequence[str]) -> Parsed:
    """Read ``argv``; argparse raises SystemExit after printing usage or help."""
    words, command = split_exec(argv)
    args = parser.parse_args(words)
    if args.verb == "exec":
        args.command = command
    verb = args.verb
    if verb in GROUPS:
        verb = f"{verb} {getattr(args, verb + '_verb')}"
    return Parsed(verb, args)


def execute(app: App, verb: str, namespace: argparse.Namespace) -> int:
    """Run ``verb`` against ``app`` and return its exit code; never raise, never a traceback."""
    try:
        return BY_NAME[verb](app, namespace)
    except RefreshdError as exc:
        app.problem(str(exc), temporary=exc.exit_code == EXIT_TEMPORARY, account=exc.account)
        return exc.exit_code
    except KeyboardInterrupt:
        app.err.write(f"{APP}: interrupted\n")
        return 130
    except BrokenPipeError:
        # The reader went away (`status --json | head -1`): as a shell tool does, end quietly;
        # stdout is pointed at /dev/null so that the interpreter's last flush cannot fail too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE
    except Exception as exc:  # a bug: report it in one line, without a traceback or secret
        if namespace.verbose:
            import traceback  # noqa: PLC0415

            app.err.write(redact_text(traceback.format_exc()))
        app.err.write(
            f"{journal_prefix(3)}{APP}: internal error: "
            f"{shown(f'{type(exc).__name__}: {exc}')} "
            "(please report it; -v shows details)\n"
        )
        return EXIT_FAILURE
    finally:
        app.close()


def main(
    argv: Sequence[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Run the command line and return its exit code; never raise, never show a traceback."""
    out = out or sys.stdout
    err = err or sys.stderr
    if environ is None:
        adopt_session_bus(os.environ)
        environ = os.environ
    parser = build_parser()
    try:
        parsed = parse(parser, sys.argv[1:] if argv is None else argv)
    except SystemExit as exc:  # argparse has printed usage or help
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if parsed.verb is None:  # no verb at all: say what there is
        parser.print_help(out)
        return EXIT_OK
    args = parsed.namespace
    # Interactive verbs print their own summary: log records only with -v (warnings and
    # errors still reach stderr, as one plain line each); `run` logs for the journal.
    configure_logging(
        args.verbose,
        stream=err,
        # `job run` logs its job's output: the point of running it in the foreground.
        quiet=parsed.verb not in ("run", "job run"),
        daemon=parsed.verb == "run",
        environ=environ,
    )
    app = App(from_namespace(Common, args), environ=environ, out=out, err=err, parser=parser)
    return execute(app, parsed.verb, args)
