"""`config init`: write a starter config (0600) at the config path; never overwrites."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

from tvmaniac_refreshd.cli.app import App
from tvmaniac_refreshd.cli.grammar import Verb
from tvmaniac_refreshd.cli.prompts import ask
from tvmaniac_refreshd.core.errors import EXIT_OK, UsageError
from tvmaniac_refreshd.core.locations import APP, TRAKT_APPS


@dataclass(frozen=True)
class ConfigInitOptions:
    client_id: str | None = None
    preset: str | None = None  # config/presets.py: "google" or "microsoft"
    tenant: str = "common"  # with preset "microsoft"


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--client-id", metavar="ID", help=f"the client id of your Trakt app ({TRAKT_APPS})"
    )
    parser.add_argument(
        "--preset",
        choices=("google", "microsoft"),
        help="a Gmail or Outlook account instead of Trakt (see the mail recipes)",
    )
    parser.add_argument(
        "--tenant",
        default="common",
        metavar="TENANT",
        help="with --preset microsoft: common (default), organizations, consumers, or a tenant id",
    )


def run(app: App, options: ConfigInitOptions) -> int:
    from tvmaniac_refreshd.config.starter import (  # noqa: PLC0415
        WHERE_TO_REGISTER,
        already_exists,
        starter_config,
        write_new,
    )

    path = app.config_location
    if path.exists():  # asked before the client id, so nobody types it for nothing
        raise already_exists(path)
    account = app.account_name or "default"
    client_id = options.client_id
    if client_id is None:
        register = WHERE_TO_REGISTER[options.preset]
        if not sys.stdin.isatty():
            raise UsageError(f"no terminal to ask on: pass --client-id ID (from {register})")
        client_id = ask(f"Client ID of your app (from {register}): ", err=app.err)
    write_new(path, starter_config(client_id, account, options.preset, options.tenant))
    where = "" if account == "default" else f" --account {account}"
    set_secret, login = (
        app.hint(f"`{APP} {verb}{where}`").strip("`") for verb in ("config set-secret", "login")
    )
    secret = f"  {set_secret}   # the client secret, kept in the keyring\n"
    app.out.write(
        f"Wrote {path} (readable only by you).\n"
        "Next:\n"
        + ("" if options.preset == "microsoft" else secret)  # a public client: no secret
        + f"  {login}\n"
    )
    return EXIT_OK


VERB = Verb(
    "config init",
    "write a starter config (0600) at the config path; never overwrites",
    ConfigInitOptions,
    run,
    arguments,
    "Asks for the Trakt app's client id on a terminal, or takes --client-id.\n"
    "--preset google or microsoft writes a Gmail or Outlook account instead.\n"
    "Then store the client secret with `config set-secret` and run `login`.",
)
