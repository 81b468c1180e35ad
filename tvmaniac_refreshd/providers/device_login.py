"""The device-code login as the user sees it: code, URL, QR code, countdown, polling.

Time and sleeping are injected, so tests drive a whole login without waiting.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TextIO

from tvmaniac_refreshd.core.durations import format_duration
from tvmaniac_refreshd.core.errors import LoginFailed, TransientError
from tvmaniac_refreshd.core.logs import get_logger
from tvmaniac_refreshd.core.tokens import TokenSet
from tvmaniac_refreshd.providers.base import DeviceCode, PollState, Provider

# RFC 8628 §3.5: on slow_down, add 5 seconds to the interval.
SLOW_DOWN_STEP = 5
# Past this the user would think we hung; Trakt's own default is 5 s.
MAX_INTERVAL = 60


def show_code(device: DeviceCode, out: TextIO, *, tty: bool, qr: bool = True) -> None:
    """Print what the user must do, and a QR code of the URL on a terminal (unless not ``qr``)."""
    out.write(f"To log in, open {device.verification_url} and enter the code: {device.user_code}\n")
    if tty and qr:
        import segno  # noqa: PLC0415  # only a terminal login needs it

        out.write("Or scan this QR code with your phone:\n")
        target = device.verification_url_complete or device.verification_url
        segno.make(target, error="l").terminal(out=out, compact=True)
    out.write(f"The code is valid for {format_duration(device.expires_in)}.\n")
    out.flush()


def wait_for_approval(
    client: Provider,
    device: DeviceCode,
    *,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    out: TextIO,
    tty: bool,
) -> TokenSet:
    """Poll at the server's interval until the user approves, refuses, or the code expires.

    A transient failure (a dropped connection, a 5xx) does not end the login: only the
    code's own expiry or a definite answer does.

    Raises:
        LoginFailed: denied, expired, already used or unknown code.
        ClientRejected: the provider rejected the client credentials.
    """
    log = get_logger()
    deadline = clock() + device.expires_in
    interval = float(device.interval)
    if not tty:  # no countdown to show: say once that the command is waiting, and for what
        out.write("Waiting for approval...\n")
        out.flush()
    while True:
        try:
            _countdown(deadline, interval, clock=clock, sleep=sleep, out=out, tty=tty)
        except BaseException:  # Ctrl-C: whatever is printed next starts on a line of its own
            _end_countdown(out, tty=tty)
            raise
        if clock() >= deadline:
            _end_countdown(out, tty=tty)
            raise LoginFailed("the code expired before it was approved; run `login` again")
        try:
            outcome = client.poll_device_token(device, now=clock())
        except TransientError as exc:
            log.warning("login.poll_failed", error=str(exc), action="retrying")
            continue
        except BaseException:
            _end_countdown(out, tty=tty)
            raise
        if isinstance(outcome, TokenSet):
            _end_countdown(out, tty=tty)
            return outcome
        if outcome is PollState.SLOW_DOWN:
            interval = min(interval + SLOW_DOWN_STEP, MAX_INTERVAL)
            log.debug("login.slow_down", interval=interval)


def _countdown(
    deadline: float,
    interval: float,
    *,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    out: TextIO,
    tty: bool,
) -> None:
    """Sleep ``interval`` seconds (never past ``deadline``), showing the time left on a tty."""
    wake = min(clock() + interval, deadline)
    while (left := wake - clock()) > 0:
        if tty:
            out.write(f"\rWaiting for approval... {format_duration(deadline - clock())} left ")
            out.flush()
        sleep(min(1.0, left) if tty else left)


def _end_countdown(out: TextIO, *, tty: bool) -> None:
    if tty:
        out.write("\n")
        out.flush()
