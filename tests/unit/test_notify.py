"""sd_notify against real AF_UNIX datagram sockets: message order, sanitizing, the watchdog gate."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tvmaniac_refreshd.core import logs
from tvmaniac_refreshd.daemon.notify import (
    STATUS_MAX_CHARS,
    Notifier,
    NotifySender,
    sanitize_status,
    watchdog_interval,
)


@dataclass
class Listener:
    """A bound notify socket and the NOTIFY_SOCKET value that reaches it."""

    sock: socket.socket
    address: str

    def received(self) -> list[str]:
        """Every datagram queued so far, decoded strictly so that stray bytes fail the test."""
        # A local datagram is queued by the time sendall() returns, so nothing needs waiting for.
        messages: list[str] = []
        while True:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                return messages
            messages.append(data.decode("ascii"))


def _bind(bind_address: str, notify_socket: str) -> Iterator[Listener]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(bind_address)
    sock.setblocking(False)
    try:
        yield Listener(sock, notify_socket)
    finally:
        sock.close()


@pytest.fixture
def path_listener(tmp_path: Path) -> Iterator[Listener]:
    """A notify socket bound to a file, as the system manager provides it."""
    path = str(tmp_path / "n.sock")
    yield from _bind(path, path)


@pytest.fixture
def abstract_listener() -> Iterator[Listener]:
    """A notify socket in the Linux abstract namespace, written '@name' in NOTIFY_SOCKET."""
    name = f"tvmaniac-notify-test-{uuid.uuid4().hex}"
    yield from _bind("\0" + name, "@" + name)


@pytest.fixture(params=["path", "abstract"])
def listener(request: pytest.FixtureRequest) -> Listener:
    """Each notify socket form in turn."""
    fixture: Listener = request.getfixturevalue(f"{request.param}_listener")
    return fixture


def notifier_for(listener: Listener, monotonic_ns: int = 0) -> Notifier:
    return Notifier({"NOTIFY_SOCKET": listener.address}, monotonic_ns=lambda: monotonic_ns)


class TestNotifier:
    def test_lifecycle_messages_arrive_in_order(self, listener: Listener) -> None:
        """READY with STATUS, STATUS, WATCHDOG, RELOADING with MONOTONIC_USEC, READY, STOPPING."""
        with notifier_for(listener, monotonic_ns=1_234_567_890_123) as notifier:
            assert notifier.enabled
            assert notifier.ready("started: 1 account")
            assert notifier.status("next refresh in 5h")
            assert notifier.watchdog()
            assert notifier.reloading()
            assert notifier.ready()
            assert notifier.stopping()

        assert listener.received() == [
            "READY=1\nSTATUS=started: 1 account",
            "STATUS=next refresh in 5h",
            "WATCHDOG=1",
            "RELOADING=1\nMONOTONIC_USEC=1234567890",
            "READY=1",
            "STOPPING=1",
        ]

    def test_extend_timeout_is_sent_in_microseconds(self, path_listener: Listener) -> None:
        """EXTEND_TIMEOUT_USEC carries the seconds asked for, in whole microseconds."""
        with notifier_for(path_listener) as notifier:
            assert notifier.extend_timeout(90)
            assert notifier.extend_timeout(0.5)

        assert path_listener.received() == [
            "EXTEND_TIMEOUT_USEC=90000000",
            "EXTEND_TIMEOUT_USEC=500000",
        ]

    @pytest.mark.parametrize("seconds", [0, -1, float("nan"), float("inf")])
    def test_extend_timeout_refuses_a_meaningless_duration(self, seconds: float) -> None:
        """A zero, negative or non-finite extension is a programming error, not a message."""
        with pytest.raises(ValueError, match="positive"):
            Notifier({}).extend_timeout(seconds)

    def test_without_notify_socket_nothing_is_sent(self, path_listener: Listener) -> None:
        """With NOTIFY_SOCKET unset every call is a quiet no-op that never opens a socket."""

        def no_factory(address: str) -> NotifySender:
            pytest.fail(f"a socket was opened for {address!r}")

        notifier = Notifier({"NOTIFY_SOCKET": ""}, factory=no_factory)

        assert not notifier.enabled
        sent = [
            notifier.ready("up"),
            notifier.status("x"),
            notifier.watchdog(),
            notifier.reloading(),
            notifier.extend_timeout(5),
            notifier.stopping(),
        ]
        notifier.close()
        assert sent == [False] * 6
        assert path_listener.received() == []

    def test_environ_defaults_to_the_process_environment(
        self, path_listener: Listener, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Without an explicit environ, NOTIFY_SOCKET is read from os.environ."""
        monkeypatch.setenv("NOTIFY_SOCKET", path_listener.address)
        with Notifier() as notifier:
            assert notifier.watchdog()
        assert path_listener.received() == ["WATCHDOG=1"]

    def test_status_with_newline_and_non_latin1_arrives_as_one_line(
        self, listener: Listener
    ) -> None:
        """A STATUS with a newline and non-Latin-1 text still arrives, as one ASCII line."""
        with notifier_for(listener) as notifier:
            assert notifier.status("next refresh → in 5h\nx")
            assert notifier.ready("café\r\tok")

        assert listener.received() == [
            "STATUS=next refresh ? in 5h x",
            "READY=1\nSTATUS=cafe ok",
        ]

    def test_a_long_status_is_cut_to_the_limit(self, path_listener: Listener) -> None:
        """A STATUS longer than the limit arrives shortened, marked with an ellipsis."""
        with notifier_for(path_listener) as notifier:
            notifier.status("x" * 1000)

        (message,) = path_listener.received()
        text = message.removeprefix("STATUS=")
        assert len(text) == STATUS_MAX_CHARS
        assert text.endswith("...")

    def test_a_registered_secret_never_reaches_the_status(
        self, path_listener: Listener, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A token that slipped into a status text is redacted before sending."""
        monkeypatch.setattr(logs, "_known", logs._Known())
        logs.register_secret("s3cr3t-refresh-token")
        with notifier_for(path_listener) as notifier:
            notifier.status("refresh failed for s3cr3t-refresh-token")

        assert path_listener.received() == [f"STATUS=refresh failed for {logs.REDACTED}"]

    def test_an_unreachable_socket_is_reported_then_retried(self, tmp_path: Path) -> None:
        """A failed send returns False without raising, and the next send connects again."""
        path = str(tmp_path / "late.sock")
        with Notifier({"NOTIFY_SOCKET": path}) as notifier:
            assert not notifier.ready()
            for listener in _bind(path, path):
                assert notifier.ready()
                assert listener.received() == ["READY=1"]

    @pytest.mark.parametrize("address", ["relative.sock", "vsock:2:1234"])
    def test_an_unsupported_address_is_not_fatal(self, address: str) -> None:
        """An address that is neither a path nor '@abstract' makes sends fail quietly."""
        with Notifier({"NOTIFY_SOCKET": address}) as notifier:
            assert notifier.enabled
            assert not notifier.ready()


class TestSanitizeStatus:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("plain", "plain"),
            ("  padded\n\n", "padded"),
            ("a\x00b\x1bc\x7fd", "a b c d"),
            ("line\u2028separator", "line separator"),
            ("Zoë → Åsa", "Zoe ? Asa"),
            ("emoji 🎬", "emoji ?"),
        ],
    )
    def test_sanitizes_to_one_ascii_line(self, text: str, expected: str) -> None:
        """Controls become spaces, accents are folded and anything else non-ASCII becomes '?'."""
        assert sanitize_status(text) == expected


class TestWatchdogInterval:
    @pytest.mark.parametrize(
        ("environ", "expected"),
        [
            ({}, None),
            ({"WATCHDOG_USEC": ""}, None),
            ({"WATCHDOG_USEC": "abc"}, None),
            ({"WATCHDOG_USEC": "0"}, None),
            ({"WATCHDOG_USEC": "-30000000"}, None),
            ({"WATCHDOG_USEC": " 30000000"}, None),
            ({"WATCHDOG_USEC": "30_000_000"}, None),
            ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4242"}, None),
            ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "not-a-pid"}, None),
            ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": ""}, None),
            ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1000"}, 15.0),
            ({"WATCHDOG_USEC": "30000000"}, 15.0),
            ({"WATCHDOG_USEC": "1"}, 0.0000005),
        ],
        ids=[
            "unset",
            "empty",
            "not-a-number",
            "zero",
            "negative",
            "spaces",
            "underscores",
            "other-pid",
            "bad-pid",
            "empty-pid",
            "our-pid",
            "no-pid",
            "one-microsecond",
        ],
    )
    def test_half_the_watchdog_period_only_for_us(
        self, environ: dict[str, str], expected: float | None
    ) -> None:
        """Half of a positive WATCHDOG_USEC, when WATCHDOG_PID is unset or names our pid."""
        assert watchdog_interval(environ, 1000) == expected


def test_unread_socket_never_blocks(tmp_path: Path) -> None:
    """With nobody reading the socket, sends are dropped instead of blocking the caller."""
    path = tmp_path / "stuck.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(str(path))
        notifier = Notifier({"NOTIFY_SOCKET": str(path)})
        results = [notifier.watchdog() for _ in range(5000)]
        notifier.close()

    assert results[0] is True
    assert results[-1] is False
