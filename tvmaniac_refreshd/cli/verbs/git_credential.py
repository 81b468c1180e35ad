"""`git-credential get|store|erase`: a git credential helper (gitcredentials(7)).

git writes a stanza of ``key=value`` lines on stdin and reads the answer from stdout. ``get``
answers for an oauth2 account whose ``git_host`` matches, with the account's user name, a token
valid for at least ``MIN_VALID`` and its expiry, so git never sends a token about to lapse.
Anything else (another host, a stanza git would not write) answers nothing and exits 0: git then
asks its next helper. ``store`` and ``erase`` are no-ops: the keyring item belongs to us, not git.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from tvmaniac_refreshd.cli.app import App
from tvmaniac_refreshd.cli.grammar import Verb
from tvmaniac_refreshd.config.settings import Account
from tvmaniac_refreshd.config.values import LOOPBACK_HOSTS
from tvmaniac_refreshd.core.errors import EXIT_OK
from tvmaniac_refreshd.runtime.access import valid_document

# git may hold a credential for the length of a fetch; a minute covers a slow one.
MIN_VALID = 60
MAX_STANZA = 64 * 1024  # git's stanzas are a few lines; more is not git talking


@dataclass(frozen=True)
class GitCredentialOptions:
    action: Literal["get", "store", "erase"] = "get"


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("get", "store", "erase"), help="what git asks for")


class StanzaInvalid(ValueError):
    """Input that git would not write; the message names the problem, never a value."""


def parse_stanza(lines: Iterable[str]) -> dict[str, str]:
    """Return the attributes of one credential stanza (up to a blank line or the end).

    Raises:
        StanzaInvalid: a line without ``=``, an empty key, or a NUL.
    """
    attributes: dict[str, str] = {}
    for raw in lines:
        line = raw.rstrip("\n")
        if not line:
            break
        key, equals, value = line.partition("=")
        if not equals or not key or "\0" in line:
            raise StanzaInvalid("a line is not key=value")
        attributes[key] = value
    return attributes


def matching_account(app: App, protocol: str, host: str) -> Account | None:
    """Return the account that answers for ``host``: --account's, else the first configured."""
    host = host.lower()
    # "host:port", or "[v6 address]:port" as git writes an IPv6 host.
    hostname = host.partition("]")[0][1:] if host.startswith("[") else host.rsplit(":", 1)[0]
    # A token sent over plain http is readable on the wire: only to this very machine.
    if protocol != "https" and not (protocol == "http" and hostname in LOOPBACK_HOSTS):
        return None
    if app.account_name is not None:
        candidates = [app.config.select(app.account_name)]
    else:
        candidates = list(app.config.accounts.values())
    for account in candidates:
        if account.git_username_for(host) is not None:
            return account
    return None


def run(app: App, options: GitCredentialOptions) -> int:
    """Run one helper action; git reads stdout, so only an answer ever goes there."""
    action = options.action
    try:
        stanza = parse_stanza(_bounded(sys.stdin))
    except (StanzaInvalid, UnicodeDecodeError) as exc:
        app.warn(f"git-credential: ignoring input git would not send ({exc})")
        return EXIT_OK
    if action != "get":
        return EXIT_OK  # store/erase: git's own bookkeeping; our keyring item is not git's
    host = stanza.get("host", "")
    if not host:
        app.warn("git-credential: no host in the request; answering nothing")
        return EXIT_OK
    account = matching_account(app, stanza.get("protocol", ""), host)
    asked_for = stanza.get("username")
    username = None if account is None else account.git_username_for(host.lower())
    if account is None or username is None or asked_for not in (None, username):
        return EXIT_OK  # not ours: git asks the next helper
    tokens = valid_document(app, account, MIN_VALID).tokens
    app.out.write(
        f"username={username}\n"
        f"password={tokens.access_token}\n"
        f"password_expiry_utc={tokens.expires_at}\n"
    )
    app.out.flush()
    return EXIT_OK


def _bounded(stream: Iterable[str]) -> Iterable[str]:
    total = 0
    for line in stream:
        total += len(line)
        if total > MAX_STANZA:
            raise StanzaInvalid("the input is far longer than a credential request")
        yield line


VERB = Verb(
    "git-credential",
    "A git credential helper for oauth2 accounts that name a git_host.",
    GitCredentialOptions,
    run,
    arguments,
    "Speaks gitcredentials(7) on stdin/stdout. `get` answers username (git_username),\n"
    "password (the access token, valid for at least a minute) and password_expiry_utc\n"
    "for a matching https host, and nothing for any other host, so git asks its next\n"
    "helper. `store` and `erase` do nothing.\n\n"
    "setup: git config --global credential.https://HOST.helper "
    "'!tvmaniac-refreshd git-credential'",
)
