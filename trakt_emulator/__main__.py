"""``python -m trakt_emulator``: serve until SIGTERM or SIGINT, printing one line and no secrets."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from trakt_emulator.emulator import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, Emulator

SECRET_ENV = "TRAKT_EMULATOR_CLIENT_SECRET"


EPILOG = f"""\
Defaults: client id {DEFAULT_CLIENT_ID!r}, client secret {DEFAULT_CLIENT_SECRET!r}.

Point a tvmaniac-refreshd config at it (URL as printed at start, e.g. with --port 8085):
  [accounts.default]
  provider = "trakt"
  client_id = "{DEFAULT_CLIENT_ID}"
  client_secret = "{DEFAULT_CLIENT_SECRET}"
  auth_url = "http://127.0.0.1:8085"
  api_url = "http://127.0.0.1:8085"

Approving a device code by hand: `tvmaniac-refreshd login` shows a verification URL on the
emulator itself (URL/activate): open it and enter the code, or use the control API:
  curl -X POST -d '{{"user_code": "CODE"}}' URL/_emulator/approve
(--auto-approve-after-polls N approves every code by itself.)

Control API (JSON over HTTP under URL/_emulator/):
  GET  state                        requests, counters, grants, pending user codes
  POST approve {{"user_code": C}}     allow the app for code C (deny: refuse it)
  POST advance_clock {{"seconds": S}} jump the emulator's clock (tokens age at once)
  POST set_ttl {{"seconds": S}}       lifetime of tokens issued from now on
  POST expire_access / revoke_grant {{"user": "alice"}}
  POST add_fault {{...}}              inject 5xx, 429, drops, delays (see faults.py)
  POST configure {{"option": value}}  any option of options.py
"""


def build_parser() -> argparse.ArgumentParser:
    """The command line; every option maps onto an Emulator argument."""
    parser = argparse.ArgumentParser(
        prog="python -m trakt_emulator",
        description="Trakt.tv OAuth emulator on loopback: try tvmaniac-refreshd without a "
        "Trakt account.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--client-id", default=DEFAULT_CLIENT_ID, help="default: %(default)s")
    parser.add_argument(
        "--client-secret",
        default=None,
        help=f"default: {DEFAULT_CLIENT_SECRET}; prefer ${SECRET_ENV}, which keeps the secret "
        "out of argv",
    )
    parser.add_argument("--ttl", type=int, default=None, help="access-token lifetime in seconds")
    parser.add_argument(
        "--auto-approve-after-polls",
        type=int,
        default=None,
        metavar="N",
        help='approve pending device codes for user "demo" after N polls',
    )
    parser.add_argument("--device-interval", type=int, default=None, metavar="S")
    parser.add_argument("--device-expires-in", type=int, default=None, metavar="S")
    parser.add_argument(
        "--port-file", type=Path, default=None, help="write the base URL here once listening"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the emulator in the foreground; exit 0 on SIGTERM/SIGINT."""
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    # Installed first, so a SIGTERM that races the start-up still exits cleanly.
    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    parser = build_parser()
    args = parser.parse_args(argv)
    secret = args.client_secret or os.environ.get(SECRET_ENV) or DEFAULT_CLIENT_SECRET
    options = {
        name: value
        for name, value in (
            ("access_ttl", args.ttl),
            ("auto_approve_after_polls", args.auto_approve_after_polls),
            ("device_interval", args.device_interval),
            ("device_expires_in", args.device_expires_in),
        )
        if value is not None
    }
    try:
        emulator = Emulator(args.client_id, secret, host=args.host, port=args.port, **options)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        emulator.start()
    except OSError as exc:
        print(
            f"trakt-emulator: cannot listen on {args.host}:{args.port}: {exc.strerror}",
            file=sys.stderr,
        )
        return 1
    # Its own activation page, not trakt.tv's, which knows nothing of the emulator's codes.
    emulator.configure(verification_url=f"{emulator.url}/activate")
    try:
        if args.port_file is not None:
            _write_atomically(args.port_file, emulator.url + "\n")
        print(f"trakt-emulator listening on {emulator.url}", flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        emulator.stop()
    return 0


def _write_atomically(path: Path, text: str) -> None:
    # A reader polling for the file must never see it half-written.
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


if __name__ == "__main__":
    sys.exit(main())
