"""Usage errors that help: the verb's own usage line, and the nearest verb or option.

argparse reports an option it does not know from the top-level parser, with the top-level
usage, even when it was given after a verb; and it names no near miss. This parser finds the
verb the line was for, reports there, and suggests what was probably meant (difflib).
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from collections.abc import Iterable, Sequence
from typing import NoReturn

from tvmaniac_refreshd.core.errors import EXIT_USAGE

_INVALID_CHOICE = re.compile(r"argument (\S+): invalid choice: '([^']*)'")


def nearest(word: str, candidates: Iterable[str]) -> str | None:
    """Return the candidate ``word`` was most probably meant to be, if one is close enough."""
    found = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return found[0] if found else None


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # argparse has no public walk of its sub-parsers
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _options(parser: argparse.ArgumentParser) -> list[str]:
    return [flag for action in parser._actions for flag in action.option_strings]


class UsageParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors name the verb's usage and the nearest valid word."""

    _argv: list[str] | None = None

    def parse_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> argparse.Namespace:
        self._argv = None if args is None else list(args)
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            self._unrecognized(parsed, extras)
        return parsed

    def _unrecognized(self, parsed: argparse.Namespace, extras: list[str]) -> NoReturn:
        """Report words no parser took, from the parser of the verb they followed."""
        parser: argparse.ArgumentParser = self
        path: list[str] = []
        while True:
            children = _subparsers(parser)
            chosen = next(
                (name for name in children if name == getattr(parsed, _dest(parser), None)), None
            )
            if chosen is None:
                break
            path.append(chosen)
            parser = children[chosen]
        word = extras[0]
        if path == ["exec"] and not word.startswith("-"):
            parser.error(
                f"the command to run goes after `--`: {self.prog} exec -- {' '.join(extras)}"
            )
        if word.startswith("-"):
            option = word.split("=", 1)[0]
            guess = nearest(option, _options(parser))
            hint = f"; did you mean {guess}?" if guess else ""
            parser.error(f"unknown option {option}{hint}")
        parser.error(f"unexpected argument{'s' if len(extras) > 1 else ''}: {' '.join(extras)}")

    def error(self, message: str) -> NoReturn:
        found = _INVALID_CHOICE.search(message)
        if found is not None:
            message = self._invalid_choice(found.group(1), found.group(2), message)
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")

    def _invalid_choice(self, what: str, word: str, message: str) -> str:
        """An unknown verb: blame an unknown option just before it (whose value it was), or
        name the nearest verb; any other choice: name the nearest one."""
        argv = self._argv or []
        if word in argv:
            before = argv[: argv.index(word)]
            if before and before[-1].startswith("-") and before[-1] not in _options(self):
                option = before[-1].split("=", 1)[0]
                guess = nearest(option, _options(self))
                hint = f"; did you mean {guess}?" if guess else ""
                return f"unknown option {option}{hint}"
        choices = re.findall(r"'([^']*)'", message.split("choose from", 1)[-1])
        guess = nearest(word, choices)
        hint = f"; did you mean {guess!r}?" if guess else ""
        if what in ("VERB", "ACTION"):
            return f"unknown {what.lower()} {word!r}{hint} (one of: {', '.join(choices)})"
        return f"{message}{hint}"


def _dest(parser: argparse.ArgumentParser) -> str:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.dest or ""
    return ""
