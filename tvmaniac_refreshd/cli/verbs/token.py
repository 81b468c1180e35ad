"""`token`: print a valid access token, refreshing it first if it is due.

A plain `token` on a token that is not due is answered by quick_token.py before this program
loads; this is the full path, taken for everything else.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from tvmaniac_refreshd.cli.app import App
from tvmaniac_refreshd.cli.grammar import Verb, duration_arg
from tvmaniac_refreshd.core.errors import EXIT_OK


@dataclass(frozen=True)
class TokenOptions:
    min_valid: int | None = None
    json: bool = False


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--min-valid",
        metavar="DUR",
        type=duration_arg,
        help="refresh first if less than DUR (e.g. 90s, 15m, 5h) remains; exit 2 (and spend "
        "no refresh) if the provider's tokens never last that long, 75 if the refresh fails "
        "for a passing reason",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="one JSON object instead: format_version, account, access_token, token_type, "
        "expires_at",
    )


def run(app: App, options: TokenOptions) -> int:
    from tvmaniac_refreshd.core.token_json import json_line  # noqa: PLC0415
    from tvmaniac_refreshd.runtime.access import valid_document  # noqa: PLC0415

    account = app.account()
    tokens = valid_document(app, account, options.min_valid).tokens
    if options.json:
        line = json_line(account.name, tokens.access_token, tokens.token_type, tokens.expires_at)
    else:
        line = tokens.access_token
    app.out.write(line + "\n")
    app.out.flush()
    return EXIT_OK


VERB = Verb(
    "token",
    "Print a valid access token, refreshing it first if it is due.",
    TokenOptions,
    run,
    arguments,
    "Only the token and a newline go to stdout, so $(tvmaniac-refreshd token) is safe.\n"
    "Without --min-valid, a token due for refresh is refreshed; if that fails for a "
    "passing\nreason, the still-valid token is printed with a warning on stderr.",
)
