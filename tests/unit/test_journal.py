"""The native journald protocol: serializer bytes, detection, the sender and the structlog path.

journald itself is replaced by a real AF_UNIX datagram socket bound in ``tmp_path``; the test
reads back what the sender put on the wire and parses it like journald would.
"""

from __future__ import annotations

import array
import fcntl
import os
import socket
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn, TextIO

import pytest

from tvmaniac_refreshd.core.journal import (
    TRUNCATION_MARK,
    JournalSender,
    sanitize_key,
    serialize,
    stderr_is_journal,
)
from tvmaniac_refreshd.core.logs import REDACTED, configure_logging, get_logger, register_secret

# A received entry never takes longer than this to show up; the limit only stops a broken
# test from hanging, nothing is asserted about it.
RECV_TIMEOUT = 10.0


def fail_with(error: Exception) -> NoReturn:
    """Raise ``error`` from a real frame, so that its traceback has something to show."""
    raise error


def parse_entry(data: bytes) -> dict[str, str]:
    """Decode one native-protocol entry, both the simple and the length-prefixed field forms."""
    fields: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        newline = data.index(b"\n", pos)
        line = data[pos:newline]
        if b"=" in line:
            key, _, value = line.partition(b"=")
            fields[key.decode()] = value.decode()
            pos = newline + 1
        else:
            (length,) = struct.unpack_from("<Q", data, newline + 1)
            start = newline + 1 + 8
            fields[line.decode()] = data[start : start + length].decode()
            assert data[start + length : start + length + 1] == b"\n"
            pos = start + length + 1
    return fields


class FakeJournal:
    """A bound datagram socket standing in for /run/systemd/journal/socket."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(RECV_TIMEOUT)
        self.received_fds = 0

    def receive_raw(self) -> bytes:
        """Return the next entry's bytes, reading the memfd if one was passed instead."""
        data, ancdata, _flags, _addr = self.sock.recvmsg(1 << 20, socket.CMSG_SPACE(4))
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fd = array.array("i", payload[:4])[0]
                self.received_fds += 1
                try:
                    seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
                    assert seals & fcntl.F_SEAL_WRITE
                    os.lseek(fd, 0, os.SEEK_SET)
                    chunks = []
                    while chunk := os.read(fd, 1 << 16):
                        chunks.append(chunk)
                    return b"".join(chunks)
                finally:
                    os.close(fd)
        return data

    def receive(self) -> dict[str, str]:
        """Return the next entry, parsed."""
        return parse_entry(self.receive_raw())

    def assert_empty(self) -> None:
        """Nothing more was sent."""
        self.sock.setblocking(False)
        with pytest.raises(BlockingIOError):
            self.sock.recv(1 << 20)


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[FakeJournal]:
    """A fake journald socket, closed after the test."""
    fake = FakeJournal(tmp_path / "journal.sock")
    yield fake
    fake.sock.close()


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    """A real pipe (read end, write end) to play stderr connected to journald."""
    read_fd, write_fd = os.pipe()
    yield read_fd, write_fd
    os.close(read_fd)
    os.close(write_fd)


def journal_stream_of(fd: int) -> str:
    """The ``$JOURNAL_STREAM`` value systemd would set for ``fd``."""
    stat = os.fstat(fd)
    return f"{stat.st_dev}:{stat.st_ino}"


def test_serialize_simple_record_golden_bytes() -> None:
    """Single-line values use the KEY=value form, in insertion order."""
    fields = {"MESSAGE": "refresh.finished account=default", "PRIORITY": "6", "ACCOUNT": "default"}
    assert serialize(fields) == (
        b"MESSAGE=refresh.finished account=default\nPRIORITY=6\nACCOUNT=default\n"
    )


def test_serialize_multiline_value_golden_bytes() -> None:
    """A value with a newline uses KEY\\n, a 64-bit little-endian length, the value and \\n."""
    fields = {"PRIORITY": "3", "TRACEBACK": "Traceback:\nValueError: x"}
    assert serialize(fields) == (
        b"PRIORITY=3\nTRACEBACK\n\x18\x00\x00\x00\x00\x00\x00\x00Traceback:\nValueError: x\n"
    )


def test_serialize_counts_utf8_bytes_in_length_prefix() -> None:
    """The length prefix counts encoded bytes, not characters."""
    assert serialize({"NOTE": "é\n"}) == b"NOTE\n\x03\x00\x00\x00\x00\x00\x00\x00\xc3\xa9\n\n"


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("ACCOUNT", "ACCOUNT"),
        ("account", "ACCOUNT"),
        ("expires_at", "EXPIRES_AT"),
        ("next-due.at", "NEXT_DUE_AT"),
        ("_UID", "UID"),
        ("__private", "PRIVATE"),
        ("2fa", "2FA"),
        ("___", None),
        ("é", None),
        ("", None),
    ],
)
def test_sanitize_key(key: str, expected: str | None) -> None:
    """Keys are upper-cased, invalid characters become _, leading _ dropped, empty ones rejected."""
    assert sanitize_key(key) == expected


def test_serialize_renames_and_drops_invalid_keys() -> None:
    """Lower-case keys are renamed, trusted-looking ones lose their _, unusable ones vanish."""
    assert serialize({"account": "a", "_UID": "0", "___": "x"}) == b"ACCOUNT=a\nUID=0\n"


def test_sanitize_key_truncates_to_journald_limit() -> None:
    """Names longer than journald's 64-character limit are cut, not sent to be ignored."""
    name = sanitize_key("a" * 100)
    assert name == "A" * 64


def test_stderr_is_journal_matches_dev_and_inode(pipe: tuple[int, int]) -> None:
    """The variable naming the fd's own device and inode means stderr is journald's."""
    _read_fd, write_fd = pipe
    assert stderr_is_journal({"JOURNAL_STREAM": journal_stream_of(write_fd)}, write_fd)


def test_stderr_is_journal_false_on_mismatch(pipe: tuple[int, int]) -> None:
    """A variable inherited from a parent whose stderr differs from ours does not count."""
    read_fd, write_fd = pipe
    stat = os.fstat(write_fd)
    other = f"{stat.st_dev}:{stat.st_ino + 1}"
    assert not stderr_is_journal({"JOURNAL_STREAM": other}, write_fd)
    # The other end of a pipe is a different inode... or the same pipe: either way, no guess.
    if os.fstat(read_fd).st_ino != stat.st_ino:
        assert not stderr_is_journal({"JOURNAL_STREAM": journal_stream_of(read_fd)}, write_fd)


@pytest.mark.parametrize("value", [None, "", "12345", "a:b", "1:2:3", ":", "-:-"])
def test_stderr_is_journal_false_when_missing_or_malformed(
    pipe: tuple[int, int], value: str | None
) -> None:
    """A missing or unparsable ``$JOURNAL_STREAM`` means stderr is not journald's."""
    _read_fd, write_fd = pipe
    environ = {} if value is None else {"JOURNAL_STREAM": value}
    assert not stderr_is_journal(environ, write_fd)


def test_stderr_is_journal_false_for_closed_fd(pipe: tuple[int, int]) -> None:
    """An fd that cannot be stat'ed (closed stderr) is not journald's."""
    _read_fd, write_fd = pipe
    stream = journal_stream_of(write_fd)
    spare = os.dup(write_fd)
    os.close(spare)
    assert not stderr_is_journal({"JOURNAL_STREAM": stream}, spare)


def test_sender_delivers_one_datagram_per_entry(journal: FakeJournal) -> None:
    """Each send is one datagram that parses back to the same fields."""
    sender = JournalSender(journal.path)
    fields = {"MESSAGE": "hello", "PRIORITY": "6", "TRACEBACK": "line 1\nline 2"}
    assert sender.send(fields)
    assert sender.send({"MESSAGE": "second"})
    assert journal.receive() == fields
    assert journal.receive() == {"MESSAGE": "second"}
    journal.assert_empty()
    assert (sender.dropped, sender.truncated, journal.received_fds) == (0, 0, 0)
    sender.close()


def test_sender_socket_is_cloexec_and_nonblocking(journal: FakeJournal) -> None:
    """The socket is not inherited by children and never blocks a send."""
    sender = JournalSender(journal.path)
    sender.send({"MESSAGE": "open the socket"})
    sock = sender._sock
    assert sock is not None
    assert not sock.get_inheritable()
    assert sock.getblocking() is False
    sender.close()


def test_sender_counts_drops_when_buffer_is_full(journal: FakeJournal) -> None:
    """With nobody reading, sends return at once and the entries beyond the buffer are counted."""
    sender = JournalSender(journal.path)
    attempts = 2000
    delivered = sum(
        sender.send({"MESSAGE": f"entry {n}", "PAD": "x" * 512}) for n in range(attempts)
    )
    assert sender.dropped > 0
    assert delivered + sender.dropped == attempts
    # The queue drains: once journald catches up, entries flow again.
    for _ in range(delivered):
        journal.receive_raw()
    assert sender.send({"MESSAGE": "after the burst"})
    assert journal.receive()["MESSAGE"] == "after the burst"
    sender.close()


def test_sender_without_journald_drops_and_does_not_raise(tmp_path: Path) -> None:
    """No socket at the path: the entry is counted as dropped, the caller sees no exception."""
    sender = JournalSender(str(tmp_path / "absent.sock"))
    assert not sender.send({"MESSAGE": "nobody listens"})
    assert sender.dropped == 1
    sender.close()


def test_oversize_entry_arrives_through_sealed_memfd(journal: FakeJournal) -> None:
    """An entry larger than a datagram may be (> 250 KB) is passed as a sealed memfd, intact."""
    sender = JournalSender(journal.path)
    blob = "x" * 300_000
    assert sender.send({"MESSAGE": "big", "BLOB": blob, "TRACEBACK": "a\nb"})
    entry = journal.receive()
    assert journal.received_fds == 1
    assert entry == {"MESSAGE": "big", "BLOB": blob, "TRACEBACK": "a\nb"}
    assert (sender.dropped, sender.truncated) == (0, 0)
    sender.close()


def test_oversize_entry_is_truncated_without_memfd(
    journal: FakeJournal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When memfd is unavailable the long values are shortened, small fields kept, and counted."""

    def no_memfd(*_args: object) -> int:
        raise OSError(38, "Function not implemented")

    monkeypatch.setattr(os, "memfd_create", no_memfd)
    sender = JournalSender(journal.path)
    assert sender.send({"MESSAGE": "m" * 300_000, "PRIORITY": "4", "ACCOUNT": "default"})
    entry = journal.receive()
    assert entry["PRIORITY"] == "4"
    assert entry["ACCOUNT"] == "default"
    assert entry["MESSAGE"].endswith(TRUNCATION_MARK)
    assert entry["MESSAGE"].startswith("mmmm")
    assert (sender.dropped, sender.truncated) == (0, 1)
    sender.close()


@pytest.fixture
def stderr_stream(pipe: tuple[int, int]) -> Iterator[TextIO]:
    """A stream on a dup of the pipe's write end: another fd, same dev:ino, closed afterwards."""
    with os.fdopen(os.dup(pipe[1]), "w") as stream:
        yield stream


def configure_for_journal(stream: TextIO, sender: JournalSender, verbosity: int = 0) -> None:
    """Configure daemon logging as if ``stream`` were journald's stderr stream."""
    configure_logging(
        verbosity,
        daemon=True,
        stream=stream,
        environ={"JOURNAL_STREAM": journal_stream_of(stream.fileno())},
        journal=sender,
    )


@pytest.fixture
def journal_logging(stderr_stream: TextIO, journal: FakeJournal) -> Iterator[JournalSender]:
    """structlog configured for the native path, talking to the fake journal."""
    sender = JournalSender(journal.path)
    configure_for_journal(stderr_stream, sender)
    yield sender
    sender.close()


def test_structlog_path_sends_structured_fields(
    journal: FakeJournal, journal_logging: JournalSender, pipe: tuple[int, int]
) -> None:
    """A refresh event becomes one entry: MESSAGE, PRIORITY and upper-cased domain fields."""
    log = get_logger(account="default")
    log.info(
        "refresh.finished",
        outcome="refreshed",
        expires_at="2026-03-01T10:00:00Z",
        next_due_at="2026-02-28T10:00:00Z",
        duration_ms=412,
    )
    entry = journal.receive()
    assert entry["PRIORITY"] == "6"
    assert entry["SYSLOG_IDENTIFIER"] == "tvmaniac-refreshd"
    assert entry["EVENT"] == "refresh.finished"
    assert entry["ACCOUNT"] == "default"
    assert entry["REFRESH_RESULT"] == "refreshed"
    assert entry["EXPIRES_AT"] == "2026-03-01T10:00:00Z"
    assert entry["NEXT_DUE_AT"] == "2026-02-28T10:00:00Z"
    assert entry["DURATION_MS"] == "412"
    assert entry["MESSAGE"] == (
        "refresh.finished account=default refresh_result=refreshed expires_at=2026-03-01T10:00:00Z"
        " next_due_at=2026-02-28T10:00:00Z duration_ms=412"
    )
    assert entry["CODE_FUNC"] == "test_structlog_path_sends_structured_fields"
    assert entry["CODE_FILE"].endswith("test_journal.py")
    assert int(entry["CODE_LINE"]) > 0
    assert all(key == key.upper() for key in entry)
    journal.assert_empty()
    # Nothing went to stderr as well: journald would store the record twice.
    os.set_blocking(pipe[0], False)
    with pytest.raises(BlockingIOError):
        os.read(pipe[0], 1)


@pytest.mark.parametrize(
    ("method", "priority"),
    [("warning", "4"), ("error", "3"), ("critical", "2")],
)
def test_structlog_path_maps_levels_to_priorities(
    journal: FakeJournal, journal_logging: JournalSender, method: str, priority: str
) -> None:
    """Each level maps to its syslog priority."""
    getattr(get_logger(), method)("refresh.retry")
    assert journal.receive()["PRIORITY"] == priority


def test_structlog_path_debug_needs_verbosity(
    journal: FakeJournal, journal_logging: JournalSender, stderr_stream: TextIO
) -> None:
    """Debug entries are filtered at verbosity 0 and sent with PRIORITY=7 at verbosity 1."""
    get_logger().debug("scheduler.tick")
    journal.assert_empty()
    journal.sock.settimeout(RECV_TIMEOUT)
    configure_for_journal(stderr_stream, journal_logging, verbosity=1)
    get_logger().debug("scheduler.tick")
    assert journal.receive()["PRIORITY"] == "7"


def test_structlog_path_redacts_registered_secrets(
    journal: FakeJournal, journal_logging: JournalSender
) -> None:
    """A registered token inside any value, and secret-named fields, arrive redacted."""
    token = "rt-journal-7f3c9a1b2d4e"
    register_secret(token)
    get_logger(account="default").warning(
        "refresh.rejected", detail=f"server echoed {token} back", refresh_token=token
    )
    raw = journal.receive_raw()
    assert token.encode() not in raw
    entry = parse_entry(raw)
    assert entry["DETAIL"] == f"server echoed {REDACTED} back"
    assert entry["REFRESH_TOKEN"] == REDACTED


def test_structlog_path_puts_traceback_in_one_entry(
    journal: FakeJournal, journal_logging: JournalSender
) -> None:
    """A logged exception is one entry whose multi-line TRACEBACK field holds the traceback."""
    secret = "at-in-traceback-0a1b2c3d"
    register_secret(secret)
    try:
        fail_with(ValueError(f"bad token {secret}"))
    except ValueError:
        get_logger(account="default").exception("refresh.crashed")
    raw = journal.receive_raw()
    journal.assert_empty()
    assert secret.encode() not in raw
    entry = parse_entry(raw)
    assert entry["PRIORITY"] == "3"
    assert entry["TRACEBACK"].startswith("Traceback (most recent call last):")
    assert "\n" in entry["TRACEBACK"]
    assert entry["TRACEBACK"].rstrip().endswith(f"ValueError: bad token {REDACTED}")
    assert "\n" not in entry["MESSAGE"]
    assert entry["MESSAGE"].endswith(f'exception="ValueError: bad token {REDACTED}"')


def test_structlog_path_keeps_reserved_fields(
    journal: FakeJournal, journal_logging: JournalSender
) -> None:
    """An event key named like a field the logger sets cannot overwrite it."""
    get_logger().info("login.started", message="hello", priority="0")
    entry = journal.receive()
    assert entry["PRIORITY"] == "6"
    assert entry["MESSAGE"].startswith("login.started")
    assert entry["FIELD_MESSAGE"] == "hello"
    assert entry["FIELD_PRIORITY"] == "0"


def test_message_shows_unix_times_as_iso_and_keeps_them_in_fields(
    journal: FakeJournal, journal_logging: JournalSender
) -> None:
    """``expires_at=1795952392`` reads as an ISO time in MESSAGE; the field keeps the number."""
    get_logger(account="default").info("refresh.finished", expires_at=1795952392, attempt=3)
    entry = journal.receive()
    assert entry["EXPIRES_AT"] == "1795952392"
    assert entry["MESSAGE"] == (
        "refresh.finished account=default expires_at=2026-11-29T11:39:52Z attempt=3"
    )


def test_message_keeps_real_newlines(journal: FakeJournal, journal_logging: JournalSender) -> None:
    """A multi-line error (a config's problems) keeps its lines, never a literal backslash-n."""
    get_logger().error("daemon.reload_rejected", error="config.toml is invalid:\n  - broken")
    entry = journal.receive()
    assert "\\n" not in entry["MESSAGE"]
    assert entry["MESSAGE"] == 'daemon.reload_rejected error="config.toml is invalid:\n  - broken"'
    assert entry["ERROR"] == "config.toml is invalid:\n  - broken"


def test_any_verb_logs_natively_when_stderr_is_the_journal(
    stderr_stream: TextIO, journal: FakeJournal
) -> None:
    """Not only `run`: a oneshot `refresh` whose stderr is journald's stream sends entries."""
    sender = JournalSender(journal.path)
    configure_logging(
        0,
        stream=stderr_stream,
        environ={"JOURNAL_STREAM": journal_stream_of(stderr_stream.fileno())},
        journal=sender,
    )
    get_logger(account="default").warning(
        "refresh.finished", outcome="transient", error="the provider answered 503"
    )
    entry = journal.receive()
    sender.close()
    assert entry["PRIORITY"] == "4"
    assert entry["ACCOUNT"] == "default"
    assert entry["REFRESH_RESULT"] == "transient"
    assert entry["SYSLOG_IDENTIFIER"] == "tvmaniac-refreshd"


def test_a_quiet_oneshot_still_logs_warnings_to_the_journal(
    stderr_stream: TextIO, journal: FakeJournal
) -> None:
    """An interactive verb (quiet: no records on a terminal or a pipe) whose stderr is the
    journal's, as the timer's `refresh --all` is, still sends its warnings there (issue 25)."""
    sender = JournalSender(journal.path)
    configure_logging(
        0,
        quiet=True,
        stream=stderr_stream,
        environ={"JOURNAL_STREAM": journal_stream_of(stderr_stream.fileno())},
        journal=sender,
    )
    get_logger(account="default").warning("refresh.finished", outcome="transient")
    entry = journal.receive()
    sender.close()
    assert entry["PRIORITY"] == "4"
    assert entry["REFRESH_RESULT"] == "transient"
