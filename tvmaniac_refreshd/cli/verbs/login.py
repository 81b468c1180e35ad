"""`login`: the device-code flow (or the browser with PKCE), then the tokens into the store."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

from tvmaniac_refreshd.cli.app import App
from tvmaniac_refreshd.cli.grammar import Verb
from tvmaniac_refreshd.cli.plaintext import warn_plaintext
from tvmaniac_refreshd.cli.status import iso
from tvmaniac_refreshd.config.settings import Account
from tvmaniac_refreshd.core.durations import format_duration
from tvmaniac_refreshd.core.errors import (
    EXIT_OK,
    ConfigError,
    RefreshdError,
    StateUnwritable,
    UsageError,
)
from tvmaniac_refreshd.core.locations import APP
from tvmaniac_refreshd.core.logs import get_logger, register_secret
from tvmaniac_refreshd.core.tokens import TokenDocument, TokenSet
from tvmaniac_refreshd.providers.base import Provider
from tvmaniac_refreshd.storage.credentials import resolve_client_secret
from tvmaniac_refreshd.storage.state import AccountRecord


@dataclass(frozen=True)
class LoginOptions:
    browser: bool = False
    port: int | None = None
    replace: bool = False
    no_qr: bool = False


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--browser",
        action="store_true",
        help="log in through the browser (authorization code with PKCE and a loopback "
        "redirect) instead of a device code; Trakt: needs a redirect_uri such as "
        "http://127.0.0.1:8765/callback, registered in the Trakt app",
    )
    parser.add_argument(
        "--port",
        type=int,
        metavar="N",
        help="with --browser: listen for the redirect on this port (e.g. to forward it over "
        "ssh -L); default: the account's redirect_port, else a free one",
    )
    parser.add_argument(
        "--no-qr",
        action="store_true",
        help="do not draw the QR code of the URL (a terminal that cannot show it, a screen reader)",
    )
    parser.add_argument(
        "--replace",
        action="store_true",
        help="overwrite a keyring item that is damaged or was written by another program",
    )


def run(app: App, options: LoginOptions) -> int:
    from tvmaniac_refreshd.cli import login_checks  # noqa: PLC0415
    from tvmaniac_refreshd.providers.device_login import show_code, wait_for_approval  # noqa: PLC0415

    account = app.account()
    app.states.check()  # before the device flow: a login must not end with nowhere to go
    login_checks.state_writable(app.states.directory)
    previous = login_checks.login_to_replace(app.store, account, replace=options.replace)
    _require_client_secret(app, account)
    warn_plaintext(app, account)
    client = app.client(account)
    by_browser = options.browser or not client.has_device_login
    login = client.browser() if by_browser else None
    if by_browser and login is None:
        wording = client.wording
        raise UsageError(f"{wording.name} offers no browser login here; {wording.relogin}")
    port = 0
    fixed = None if login is None else login.registered_redirect_uri
    if login is not None and fixed is None:
        port = options.port if options.port is not None else account.redirect_port
    elif fixed is not None:  # the provider accepts this very URI, so its port is the one
        port = _registered_port(fixed, options.port)
    # Said before anything is asked of the provider, and only what is true of this login.
    for warning in (
        login_checks.ignored_port(port=options.port, browser_login=by_browser),
        login_checks.replace_warning(account, previous),
    ):
        if warning is not None:
            app.warn(warning)
    if login is not None:
        from tvmaniac_refreshd.providers.browser_login import (  # noqa: PLC0415
            browser_login,
            default_opener,
            has_display,
        )

        opener = default_opener() if has_display(app.environ) else None
        tokens = browser_login(
            login, port=port, out=app.out, open_browser=opener, redirect_uri=fixed
        )
    else:
        device = client.request_device_code(now=app.clock())
        tty = app.out.isatty()
        show_code(device, app.out, tty=tty, qr=not options.no_qr)
        tokens = wait_for_approval(
            client,
            device,
            clock=app.clock,
            sleep=app.sleep,
            out=app.out,
            tty=tty,
        )
    register_secret(tokens.access_token)
    register_secret(tokens.refresh_token)
    document = TokenDocument(
        account=account.name,
        provider=account.provider,
        tokens=tokens,
        fingerprint=account.fingerprint(),
        obtained_at=int(app.clock()),
        client_id=account.client_id,
        endpoint=account.endpoint,
    )
    recorded = True
    with _stored_or_said(account), app.lock(account):
        app.store.save(document)
        try:
            app.states.save(account.name, AccountRecord(last_success_at=int(app.clock())))
        except StateUnwritable as exc:
            # The tokens are stored: a "try again" here would spend another login for nothing.
            app.warn(f"logged in, but the state could not be recorded: {exc}")
            recorded = False
    app.tell_daemon()
    who = _who_logged_in(app, account, client, tokens, record=recorded)
    get_logger(account=account.name).info("login.finished", expires_at=iso(tokens.expires_at))
    left = format_duration(tokens.expires_at - app.clock())
    as_whom = f" as {who!r}" if who else ""
    app.out.write(
        f"Logged in{as_whom}: account {account.name!r} is stored in "
        f"{app.store.where(account.name)}; the access token is valid for {left}.\n"
        + app.hint(f"Check it any time with `{APP} status`.\n")
    )
    return EXIT_OK


@contextlib.contextmanager
def _stored_or_said(account: Account) -> Iterator[None]:
    """A login approved at the provider whose tokens cannot be stored says so (75)."""
    try:
        yield
    except StateUnwritable as exc:
        raise StateUnwritable(
            f"the login of {account.name!r} was approved, but nothing was stored: {exc}",
            account=account.name,
        ) from None


def _who_logged_in(
    app: App, account: Account, client: Provider, tokens: TokenSet, *, record: bool
) -> str | None:
    """Ask the provider whose tokens these are and remember it (``record``: the state could be
    written); the tokens are stored already, so a failure here only costs the name."""
    try:
        who = client.identity(tokens, now=app.clock())
    except RefreshdError as exc:
        app.warn(f"logged in, but could not ask the provider who logged in: {exc}")
        return None
    if record:
        try:
            app.states.update(account.name, logged_in_as=who)
        except StateUnwritable as exc:
            app.warn(f"logged in, but the state could not be recorded: {exc}")
    return who


def _require_client_secret(app: App, account: Account) -> None:
    """Fail before a code is shown if the provider will refuse the token request without one."""
    if not account.needs_client_secret():
        return
    if resolve_client_secret(account, app.environ, app.store).value is None:
        raise ConfigError(
            app.config.source,
            [
                f"accounts.{account.name}: no client secret; store it in {_store_name(app)} with "
                f"`{APP} config set-secret --account {account.name}` (or set client_secret "
                "in the file)"
            ],
        )


def _store_name(app: App) -> str:
    return "the keyring" if app.store.kind == "keyring" else "the file store"


def _registered_port(redirect_uri: str, asked: int | None) -> int:
    """Return the port of a registered redirect URI; --port may only repeat it."""
    port = urlsplit(redirect_uri).port or 80
    if asked is not None and asked != port:
        raise UsageError(
            f"--port {asked} differs from the port of the registered redirect URI "
            f"({redirect_uri}), which the provider accepts exactly as written"
        )
    return port


VERB = Verb(
    "login",
    "Log in with the device-code flow and store the tokens in the keyring.",
    LoginOptions,
    run,
    arguments,
    "Prints a URL and a code (and a QR code on a terminal); approve the code in any "
    "browser.\nThe command waits, polling at the provider's interval, until you approve "
    "or the code expires.",
)
