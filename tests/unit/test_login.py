"""The device-login loop, driven by a fake clock: intervals, slow down, faults, expiry."""

from __future__ import annotations

import io

import pytest

from tests.fakes import FakeClock, ProviderParts
from tvmaniac_refreshd.core.errors import ClientRejected, LoginFailed, TransientError
from tvmaniac_refreshd.core.tokens import TokenSet
from tvmaniac_refreshd.providers.base import DeviceCode, PollState
from tvmaniac_refreshd.providers.device_login import show_code, wait_for_approval

DEVICE = DeviceCode("d" * 64, "ABCD1234", "https://trakt.tv/activate", 600, 5)
TOKENS = TokenSet("a" * 64, "r" * 64, 0, 604800, 604800)


class ScriptedClient(ProviderParts):
    """Answers each poll from a script, recording when it was asked."""

    def __init__(self, clock: FakeClock, answers: list[object]) -> None:
        self.clock = clock
        self.answers = answers
        self.polled_at: list[float] = []

    def poll_device_token(self, device: DeviceCode, *, now: float) -> TokenSet | PollState:
        self.polled_at.append(now)
        answer = self.answers.pop(0) if self.answers else PollState.PENDING
        if isinstance(answer, BaseException):
            raise answer
        assert isinstance(answer, TokenSet | PollState)
        return answer


def run(answers: list[object], *, tty: bool = False) -> tuple[ScriptedClient, FakeClock, str]:
    clock = FakeClock(0.0)
    client = ScriptedClient(clock, answers)
    out = io.StringIO()
    result = wait_for_approval(
        client,
        DEVICE,
        clock=clock,
        sleep=clock.sleep,
        out=out,
        tty=tty,
    )
    assert result == TOKENS
    return client, clock, out.getvalue()


class TestWaitForApproval:
    def test_polls_at_the_interval(self) -> None:
        """Pending answers are polled every `interval` seconds until approval."""
        client, _, _ = run([PollState.PENDING, PollState.PENDING, TOKENS])

        assert client.polled_at == [5.0, 10.0, 15.0]

    def test_slow_down_widens_interval(self) -> None:
        """Each 429 adds five seconds to the interval."""
        client, _, _ = run([PollState.SLOW_DOWN, PollState.SLOW_DOWN, PollState.PENDING, TOKENS])

        assert client.polled_at == [5.0, 15.0, 30.0, 45.0]

    def test_dropped_connection_does_not_abort(self) -> None:
        """A transient failure in the middle of polling is ridden out."""
        client, _, _ = run([TransientError("dropped"), TransientError("502"), TOKENS])

        assert len(client.polled_at) == 3

    def test_stops_at_expiry(self) -> None:
        """Nobody approves: the loop ends when the code expires, without polling after it."""
        clock = FakeClock(0.0)
        client = ScriptedClient(clock, [])

        with pytest.raises(LoginFailed, match="expired"):
            wait_for_approval(
                client,
                DEVICE,
                clock=clock,
                sleep=clock.sleep,
                out=io.StringIO(),
                tty=False,
            )
        assert max(client.polled_at) < 600
        assert len(client.polled_at) == 119

    @pytest.mark.parametrize("error", [LoginFailed("denied"), ClientRejected("bad client")])
    def test_definite_answers_end_the_login(self, error: Exception) -> None:
        """A denial or a rejected client ends the loop at once."""
        clock = FakeClock(0.0)
        client = ScriptedClient(clock, [PollState.PENDING, error])

        with pytest.raises(type(error)):
            wait_for_approval(
                client,
                DEVICE,
                clock=clock,
                sleep=clock.sleep,
                out=io.StringIO(),
                tty=False,
            )
        assert len(client.polled_at) == 2

    def test_countdown_on_a_terminal(self) -> None:
        """On a terminal the time left is shown while waiting."""
        _, _, text = run([PollState.PENDING, TOKENS], tty=True)

        assert "Waiting for approval... 10m left" in text
        assert "9m 51s left" in text


class TestShowCode:
    def test_plain_output(self) -> None:
        """Off a terminal: the URL, the code and the validity, no QR code."""
        out = io.StringIO()
        show_code(DEVICE, out, tty=False)

        assert out.getvalue() == (
            "To log in, open https://trakt.tv/activate and enter the code: ABCD1234\n"
            "The code is valid for 10m.\n"
        )

    def test_qr_code_on_a_terminal(self) -> None:
        """On a terminal a QR code of the URL is drawn as well."""
        out = io.StringIO()
        show_code(DEVICE, out, tty=True)

        text = out.getvalue()
        assert "scan this QR code" in text
        assert text.count("\n") > 10


def test_no_qr_on_a_terminal() -> None:
    """`login --no-qr`: the URL and the code only, also on a terminal (issue 25)."""
    out = io.StringIO()
    show_code(DEVICE, out, tty=True, qr=False)

    assert "QR" not in out.getvalue()


def test_off_a_terminal_it_says_it_is_waiting() -> None:
    """Without a countdown to show, one line says the command waits (issue 25)."""
    _, _, text = run([PollState.PENDING, TOKENS], tty=False)

    assert text.count("Waiting for approval...\n") == 1
