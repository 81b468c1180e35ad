"""The command line: parse the arguments, run the verb, map errors to exit codes.

The verbs are in commands.py, the wiring they share in app.py.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TextIO, TypeVar

from tvmaniac_refreshd import __version__
from tvmaniac_refreshd.cli.app import App
from tvmaniac_refreshd.cli.commands import (
    cmd_config_check,
    cmd_config_example,
    cmd_config_init,
    cmd_config_set_secret,
    cmd_exec,
    cmd_git_credential,
    cmd_login,
    cmd_logout,
    cmd_refresh,
    cmd_run,
    cmd_service_install,
    cmd_service_status,
    cmd_service_uninstall,
    cmd_status,
    cmd_token,
)
from tvmaniac_refreshd.cli.migrate import cmd_store_migrate
from tvmaniac_refreshd.cli.options import (
    Common,
    CompletionOptions,
    ConfigCheckOptions,
    ConfigInitOptions,
    ExecOptions,
    GitCredentialOptions,
    LoginOptions,
    LogoutOptions,
    NoOptions,
    RefreshOptions,
    ServiceInstallOptions,
    ServiceStatusOptions,
    ServiceUninstallOptions,
    StatusOptions,
    StoreMigrateOptions,
    TokenOptions,
    from_namespace,
)
from tvmaniac_refreshd.core.durations import parse_duration
from tvmaniac_refreshd.core.errors import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_TEMPORARY,
    EXIT_USAGE,
    RefreshdError,
)
from tvmaniac_refreshd.core.locations import APP, TRAKT_APPS, adopt_session_bus
from tvmaniac_refreshd.core.logs import configure_logging, journal_prefix, redact_text, shown

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

EXIT_CODES = """\
exit codes:
  0   success (including "nothing was due")
  1   other failure
  2   usage error
  69  the keyring is unavailable or locked
  75  temporary failure (network, 429, 5xx, timeout): try again later; tokens kept
  77  the provider rejected the session: run `login`
  78  invalid configuration
"""


def _duration_arg(text: str) -> int:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def action(
    group: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    summary: str,
    details: str = "",
) -> argparse.ArgumentParser:
    """Add verb (or a verb's action) ``name`` to ``group``, with the global options."""
    parser = group.add_parser(
        name,
        help=summary,
        description=f"{summary}\n\n{details}".strip(),
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
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


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser with every verb and its help."""
    parser = argparse.ArgumentParser(
        prog=APP,
        description=DESCRIPTION,
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_global_options(parser, top=True)
    # Not required: no arguments at all print the help (main does that).
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")

    def verb(name: str, summary: str, details: str = "") -> argparse.ArgumentParser:
        return action(verbs, name, summary, details)

    login = verb(
        "login",
        "Log in with the device-code flow and store the tokens in the keyring.",
        "Prints a URL and a code (and a QR code on a terminal); approve the code in any "
        "browser.\nThe command waits, polling at the provider's interval, until you approve "
        "or the code expires.",
    )
    login.add_argument(
        "--browser",
        action="store_true",
        help="log in through the browser (authorization code with PKCE and a loopback "
        "redirect) instead of a device code; Trakt: needs a redirect_uri such as "
        "http://127.0.0.1:8765/callback, registered in the Trakt app",
    )
    login.add_argument(
        "--port",
        type=int,
        metavar="N",
        help="with --browser: listen for the redirect on this port (e.g. to forward it over "
        "ssh -L); default: the account's redirect_port, else a free one",
    )
    login.add_argument(
        "--replace",
        action="store_true",
        help="overwrite a keyring item that is damaged or was written by another program",
    )
    logout = verb(
        "logout",
        "Revoke the token at the provider and delete it from the keyring.",
        "If the provider cannot be reached, the tokens are still deleted locally, a warning "
        "is printed, and the exit code is 0.\nIf the config now names another provider or "
        "client than the login was made with, nothing is sent anywhere and nothing is "
        "deleted unless --local is given.",
    )
    logout.add_argument(
        "--local",
        action="store_true",
        help="delete the tokens from the keyring without sending anything to any server "
        "(revoke the app by hand at the provider then)",
    )
    status = verb(
        "status",
        "Show each account's state, expiry, next refresh and last result.",
        "States: logged_out, active, refresh_due, expired, reauth_required.\n"
        "The text output may change between versions; scripts should use --json.",
    )
    status.add_argument(
        "--json", action="store_true", help='machine-readable output ("format_version": 1)'
    )
    status.add_argument(
        "--check",
        action="store_true",
        help="a health check: exit 77 if any account needs `login`, else 0",
    )
    token = verb(
        "token",
        "Print a valid access token, refreshing it first if it is due.",
        "Only the token and a newline go to stdout, so $(tvmaniac-refreshd token) is safe.\n"
        "Without --min-valid, a token due for refresh is refreshed; if that fails for a "
        "passing\nreason, the still-valid token is printed with a warning on stderr.",
    )
    token.add_argument(
        "--min-valid",
        metavar="DUR",
        type=_duration_arg,
        help="refresh first if less than DUR (e.g. 90s, 15m, 5h) remains; exit 2 (and spend "
        "no refresh) if the provider's tokens never last that long, 75 if the refresh fails "
        "for a passing reason",
    )
    token.add_argument(
        "--json",
        action="store_true",
        help="one JSON object instead: format_version, account, access_token, token_type, "
        "expires_at",
    )
    verb(
        "run",
        "Run the daemon in the foreground (the service manager starts this).",
        "Keeps every account refreshed: each is planned from its token's lifetime, retried\n"
        "with capped exponential backoff after passing failures, and left alone once the\n"
        "provider rejects it (until `login`). Logins and logouts done meanwhile are noticed.\n\n"
        "signals: SIGHUP re-reads the config (an invalid one is rejected and the old one kept);\n"
        "SIGTERM or SIGINT stop it within a few seconds.\n"
        "Under systemd it speaks sd_notify (READY, STATUS, WATCHDOG, RELOADING, STOPPING) and\n"
        "logs to journald with fields such as ACCOUNT, EVENT and REFRESH_RESULT.",
    )
    refresh = verb(
        "refresh",
        "Refresh each selected account that is due, then exit (what the timer runs).",
    )
    refresh.add_argument("--force", action="store_true", help="refresh even if not due")
    refresh.add_argument(
        "--all", action="store_true", help="every configured account, not just --account"
    )
    service = verb(
        "service",
        "Install, remove or inspect the OS service (systemd user units, launchd agent).",
        "daemon mode: a long-running `run` (systemd Type=notify, or a launchd KeepAlive agent).\n"
        "timer mode: `refresh --all` every hour (systemd timer with Persistent=true, or launchd\n"
        "StartCalendarInterval), for machines where nothing should stay resident.\n"
        "Then control it with systemctl --user / launchctl; logs: journalctl --user -u "
        "'tvmaniac-refreshd*'.",
    )
    service_verbs = service.add_subparsers(dest="service_verb", metavar="ACTION", required=True)
    install = action(
        service_verbs,
        "install",
        "install and start the service; running it again updates it (idempotent)",
    )
    install.add_argument(
        "--mode",
        choices=("daemon", "timer"),
        default="daemon",
        help="daemon (default) or an hourly timer; switching replaces the other mode",
    )
    install.add_argument(
        "--dry-run", action="store_true", help="print the files and commands; change nothing"
    )
    uninstall = action(
        service_verbs, "uninstall", "stop and remove the service; fine if it is not installed"
    )
    uninstall.add_argument(
        "--dry-run", action="store_true", help="print what would be removed; change nothing"
    )
    service_status = action(
        service_verbs,
        "status",
        "is it installed, in which mode, and what the service manager says",
    )
    service_status.add_argument(
        "--json", action="store_true", help="machine-readable output, also for errors"
    )
    config = verb("config", "Create, show or check the configuration, or store a client secret.")
    config_verbs = config.add_subparsers(dest="config_verb", metavar="ACTION", required=True)
    check = action(
        config_verbs,
        "check",
        "validate the config and the environment, and say how to fix each problem",
    )
    check.add_argument(
        "--only-config",
        action="store_true",
        help="check the config file alone (what `systemctl --user reload` runs first)",
    )
    action(
        config_verbs,
        "set-secret",
        "read the account's client secret from the terminal (or stdin) into the keyring",
    )
    init = action(
        config_verbs,
        "init",
        "write a starter config (0600) at the config path; never overwrites",
        "Asks for the Trakt app's client id on a terminal, or takes --client-id.\n"
        "Then store the client secret with `config set-secret` and run `login`.",
    )
    init.add_argument(
        "--client-id", metavar="ID", help=f"the client id of your Trakt app ({TRAKT_APPS})"
    )
    action(config_verbs, "example", "print the shipped example config, every key explained")
    store = verb(
        "store",
        "Move the tokens between the keyring and the file store.",
        "migrate --to file|keyring moves every account's tokens and client secret from the\n"
        "other store, each under the account's lock, verified before the source is deleted.\n"
        "Then set [store] backend in the config to match.",
    )
    store_verbs = store.add_subparsers(dest="store_verb", metavar="ACTION", required=True)
    migrate = action(store_verbs, "migrate", "move every account's items to the given store")
    migrate.add_argument("--to", choices=("file", "keyring"), required=True, help="target store")
    _consumer_verbs(verb)
    return parser


def _consumer_verbs(verb: Callable[..., argparse.ArgumentParser]) -> None:
    """The verbs that hand the token to other programs: exec, git, shells, man."""
    run = verb(
        "exec",
        "Run a command with a valid access token in its environment.",
        "Makes sure the token is valid (as `token` does), then replaces itself with CMD, the\n"
        "token in the variable NAME. The token is never in an argv; nothing goes to stdout;\n"
        "CMD's exit code is the exit code (127: CMD not found). If no valid token can be had,\n"
        "CMD is not run and the exit code says why (69, 75, 77, 78).\n\n"
        "example (printf is a shell builtin, so the token is in no argv):\n"
        "  tvmaniac-refreshd exec -- sh -c "
        '\'printf "Authorization: Bearer %s\\n" "$ACCESS_TOKEN" | curl -H @- URL\'',
    )
    run.usage = f"{APP} exec [-h] [--min-valid DUR] [--env NAME] -- CMD [ARG...]"
    run.add_argument(
        "--min-valid",
        metavar="DUR",
        type=_duration_arg,
        help="refresh first if less than DUR remains (default: as `token`)",
    )
    run.add_argument(
        "--env",
        metavar="NAME",
        default="ACCESS_TOKEN",
        help="the environment variable that holds the token (default: ACCESS_TOKEN)",
    )
    run.set_defaults(command=None)
    git = verb(
        "git-credential",
        "A git credential helper for oauth2 accounts that name a git_host.",
        "Speaks gitcredentials(7) on stdin/stdout. `get` answers username (git_username),\n"
        "password (the access token, valid for at least a minute) and password_expiry_utc\n"
        "for a matching https host, and nothing for any other host, so git asks its next\n"
        "helper. `store` and `erase` do nothing.\n\n"
        "setup: git config --global credential.https://HOST.helper "
        "'!tvmaniac-refreshd git-credential'",
    )
    git.add_argument("action", choices=("get", "store", "erase"), help="what git asks for")
    shells = verb(
        "completion",
        "Print a shell completion script for every verb and option.",
        'bash: eval "$(tvmaniac-refreshd completion bash)"\n'
        'zsh:  tvmaniac-refreshd completion zsh > "${fpath[1]}/_tvmaniac-refreshd"\n'
        "fish: tvmaniac-refreshd completion fish > "
        "~/.config/fish/completions/tvmaniac-refreshd.fish",
    )
    shells.add_argument("shell", choices=("bash", "zsh", "fish"), help="the shell")


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


def cmd_completion(app: App, options: CompletionOptions) -> int:
    """Print the completion script; here, since it is made from this module's parser."""
    from tvmaniac_refreshd.cli.completion import script  # noqa: PLC0415

    app.out.write(script(build_parser(), options.shell))
    return EXIT_OK


Options = TypeVar("Options")


@dataclass(frozen=True)
class Verb(Generic[Options]):
    """A verb's handler and the options it takes."""

    handler: Callable[[App, Options], int]
    options: type[Options]

    def __call__(self, app: App, namespace: argparse.Namespace) -> int:
        return self.handler(app, from_namespace(self.options, namespace))


VERBS: dict[str, Verb[Any]] = {
    "login": Verb(cmd_login, LoginOptions),
    "logout": Verb(cmd_logout, LogoutOptions),
    "status": Verb(cmd_status, StatusOptions),
    "token": Verb(cmd_token, TokenOptions),
    "refresh": Verb(cmd_refresh, RefreshOptions),
    "run": Verb(cmd_run, NoOptions),
    "service install": Verb(cmd_service_install, ServiceInstallOptions),
    "service uninstall": Verb(cmd_service_uninstall, ServiceUninstallOptions),
    "service status": Verb(cmd_service_status, ServiceStatusOptions),
    "config check": Verb(cmd_config_check, ConfigCheckOptions),
    "config set-secret": Verb(cmd_config_set_secret, NoOptions),
    "config init": Verb(cmd_config_init, ConfigInitOptions),
    "config example": Verb(cmd_config_example, NoOptions),
    "store migrate": Verb(cmd_store_migrate, StoreMigrateOptions),
    "exec": Verb(cmd_exec, ExecOptions),
    "git-credential": Verb(cmd_git_credential, GitCredentialOptions),
    "completion": Verb(cmd_completion, CompletionOptions),
}


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
    words, command = split_exec(sys.argv[1:] if argv is None else argv)
    try:
        args = parser.parse_args(words)
    except SystemExit as exc:  # argparse has printed usage or help
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if args.verb == "exec":
        args.command = command
    verb = args.verb
    if verb is None:  # no verb at all: say what there is
        parser.print_help(out)
        return EXIT_OK
    if verb in ("config", "service", "store"):
        verb = f"{verb} {getattr(args, verb + '_verb')}"
    # Interactive verbs print their own summary: log records only with -v (warnings and
    # errors still reach stderr, as one plain line each); `run` logs for the journal.
    configure_logging(
        args.verbose,
        stream=err,
        quiet=verb != "run",
        daemon=verb == "run",
        environ=environ,
    )
    app = App(from_namespace(Common, args), environ=environ, out=out, err=err)
    try:
        return VERBS[verb](app, args)
    except RefreshdError as exc:
        app.problem(str(exc), temporary=exc.exit_code == EXIT_TEMPORARY, account=exc.account)
        return exc.exit_code
    except KeyboardInterrupt:
        err.write(f"{APP}: interrupted\n")
        return 130
    except Exception as exc:  # a bug: report it in one line, without a traceback or secret
        if args.verbose:
            import traceback  # noqa: PLC0415

            err.write(redact_text(traceback.format_exc()))
        err.write(
            f"{journal_prefix(3)}{APP}: internal error: "
            f"{shown(f'{type(exc).__name__}: {exc}')} "
            "(please report it; -v shows details)\n"
        )
        return EXIT_FAILURE
    finally:
        app.close()
