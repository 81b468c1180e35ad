"""`exec`: run a command with a valid access token in its environment, never in its argv.

The process replaces itself with the command (``execvpe``), so the command's exit code is the
exit code and signals reach it directly. Nothing is printed on stdout: that belongs to CMD.
"""

from __future__ import annotations

import argparse
import errno
import os
import re
import shutil
from dataclasses import dataclass

from tvmaniac_refreshd.cli.app import App
from tvmaniac_refreshd.cli.grammar import Verb, duration_arg
from tvmaniac_refreshd.core.errors import UsageError
from tvmaniac_refreshd.core.locations import APP
from tvmaniac_refreshd.runtime.access import valid_document

DEFAULT_VARIABLE = "ACCESS_TOKEN"
# POSIX shells can only read variables of this form; anything else is surely a typo.
VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# As shells report them (POSIX 2.8.2): not found, and found but not runnable.
EXIT_NOT_FOUND = 127
EXIT_NOT_EXECUTABLE = 126


@dataclass(frozen=True)
class ExecOptions:
    min_valid: int | None = None
    env: str = DEFAULT_VARIABLE
    command: list[str] | None = None  # what followed `--`; None: there was no `--`


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.usage = f"{APP} exec [--min-valid DUR] [--env NAME] -- CMD [ARG...]"
    parser.add_argument(
        "--min-valid",
        metavar="DUR",
        type=duration_arg,
        help="refresh first if less than DUR remains (default: as `token`)",
    )
    parser.add_argument(
        "--env",
        metavar="NAME",
        default=DEFAULT_VARIABLE,
        help="the environment variable that holds the token (default: ACCESS_TOKEN)",
    )
    parser.set_defaults(command=None)


def run(app: App, options: ExecOptions) -> int:
    """Make the token valid, then become the command; return only if it cannot be started."""
    command = options.command
    if not command:
        raise UsageError("exec needs a command after `--`: exec [OPTIONS] -- CMD [ARG...]")
    name = options.env or DEFAULT_VARIABLE
    if not VARIABLE_NAME.fullmatch(name):
        raise UsageError(f"--env {name!r} is not a variable name (letters, digits, '_')")
    # Before the token is fetched: a missing command must not cost a refresh.
    program = _resolve(command[0], app.environ.get("PATH", os.defpath))
    if program is None:
        app.err.write(f"{APP}: {command[0]}: command not found\n")
        return EXIT_NOT_FOUND
    document = valid_document(app, app.account(), options.min_valid)
    environment = {**app.environ, name: document.tokens.access_token}
    app.out.flush()
    app.err.flush()
    app.close()  # the HTTP pool's sockets must not leak into the command
    try:
        os.execve(program, command, environment)  # noqa: S606  # argv as given, no shell
    except OSError as exc:
        app.err.write(f"{APP}: {command[0]}: {exc.strerror}\n")
        return EXIT_NOT_FOUND if exc.errno == errno.ENOENT else EXIT_NOT_EXECUTABLE
    return EXIT_NOT_EXECUTABLE  # not reached: execve returns only by raising


def _resolve(name: str, path: str) -> str | None:
    """Return the file ``name`` runs, searched in ``path`` as execvp would; None if none."""
    if "/" in name:
        return name if os.path.exists(name) else None
    return shutil.which(name, path=path)


VERB = Verb(
    "exec",
    "Run a command with a valid access token in its environment.",
    ExecOptions,
    run,
    arguments,
    "Makes sure the token is valid (as `token` does), then replaces itself with CMD, the\n"
    "token in the variable NAME. The token is never in an argv; nothing goes to stdout;\n"
    "CMD's exit code is the exit code (127: CMD not found). If no valid token can be had,\n"
    "CMD is not run and the exit code says why (69, 75, 77, 78).\n\n"
    "example (printf is a shell builtin, so the token is in no argv):\n"
    "  tvmaniac-refreshd exec -- sh -c "
    '\'printf "Authorization: Bearer %s\\n" "$ACCESS_TOKEN" | curl -H @- URL\'',
)
