"""The daemon's `token` socket: its protocol, both uid checks, its bounds, and every way the
client gives up (no daemon, a stale socket, another version, a silent or oversized answer)."""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from tvmaniac_refreshd.core.errors import StoreUnavailable
from tvmaniac_refreshd.daemon.token_server import TokenServer
from tvmaniac_refreshd.storage import token_socket
from tvmaniac_refreshd.storage.token_socket import (
    MAX_ANSWER,
    MAX_REQUEST,
    OTHER_UID,
    Listener,
    ask,
    public_document,
    serve_connection,
)

BUS = "unix:path=/run/user/1000/bus"
STORED = {
    "format": "tvmaniac-refreshd/tokens",
    "version": 1,
    "account": "default",
    "fingerprint": "sha256:abc",
    "access_token": "access-1",
    "refresh_token": "refresh-1",
    "token_type": "bearer",
    "created_at": 1,
    "expires_in": 604800,
    "expires_at": 604801,
}


@pytest.fixture
def state(tmp_path: Path) -> str:
    # Long on purpose: beyond a Unix socket address's 108 bytes, reached through /proc/self/fd.
    directory = tmp_path / ("x" * 80) / "state"
    directory.mkdir(parents=True, mode=0o700)
    return str(directory)


class Served:
    """A real TokenServer on a real socket in ``state``, with a store stand-in."""

    def __init__(self, state: str) -> None:
        self.items: dict[str, str] = {"default": json.dumps(STORED)}
        self.allowed = True
        self.reads: list[str] = []
        listener = Listener.bind(state)
        assert isinstance(listener, Listener)
        self.listener = listener
        self.server = TokenServer(
            listener,
            accounts=lambda: {"default", "other"},
            bus=BUS,
            allowed=lambda: self.allowed,
            read=self.read,
        )

    def read(self, account: str) -> Mapping[str, object] | None:
        self.reads.append(account)
        item = self.items.get(account)
        if item == "fail":
            raise StoreUnavailable("the keyring is locked")
        return None if item is None else public_document(item)


@pytest.fixture
def served(state: str) -> Iterator[Served]:
    running = Served(state)
    running.server.start()
    yield running
    running.server.close()


def test_the_daemon_answers_the_public_part_only(served: Served, state: str) -> None:
    answer = ask(state, "default", BUS)

    assert answer is not None
    assert answer["access_token"] == "access-1"
    assert "refresh_token" not in answer
    assert "account" not in answer
    assert set(answer) == set(token_socket.PUBLIC_KEYS)


def test_the_socket_is_ours_alone(served: Served, state: str) -> None:
    info = os.lstat(token_socket.socket_path(state))

    assert info.st_mode & 0o777 == 0o600
    assert info.st_uid == os.geteuid()


@pytest.mark.parametrize(
    ("account", "bus", "allowed", "item"),
    [
        ("stranger", BUS, True, "{}"),  # not an account of this daemon
        ("default", "unix:path=/elsewhere", True, "{}"),  # another session bus, another keyring
        ("default", BUS, False, "{}"),  # the store would ask per client now
        ("other", BUS, True, None),  # nothing stored
        ("other", BUS, True, "fail"),  # the store failed: the client reads and reports
    ],
)
def test_refusals_send_the_client_to_the_keyring(
    served: Served,
    state: str,
    account: str,
    bus: str,
    allowed: bool,
    item: str | None,
) -> None:
    served.allowed = allowed
    if item is not None:
        served.items["other"] = item

    assert ask(state, account, bus) is None


def test_a_refusal_reads_nothing_when_the_store_may_not_be_read(served: Served, state: str) -> None:
    served.allowed = False

    assert ask(state, "default", BUS) is None
    assert served.reads == []


def test_another_uid_is_refused_before_it_is_read(served: Served) -> None:
    """SO_PEERCRED says who connected; another uid gets a refusal, and nothing is read."""
    ours, theirs = socket.socketpair()
    theirs.sendall(json.dumps({"v": 1, "account": "default", "bus": BUS}).encode() + b"\n")
    outcome = serve_connection(ours, served.server.respond, peer=lambda _: os.geteuid() + 1)
    answer = json.loads(theirs.recv(MAX_ANSWER))
    ours.close()
    theirs.close()

    assert outcome == OTHER_UID
    assert answer == {"v": 1, "refused": OTHER_UID}
    assert served.reads == []


def test_the_client_believes_only_a_server_of_its_uid(
    served: Served, state: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(token_socket, "peer_uid", lambda _: os.geteuid() + 1)

    assert ask(state, "default", BUS) is None


@pytest.mark.parametrize(
    "request_line",
    [
        b"not json\n",
        b"[]\n",
        json.dumps({"v": 2, "account": "default", "bus": BUS}).encode() + b"\n",
        json.dumps({"v": 1, "account": 7, "bus": BUS}).encode() + b"\n",
        b"{" + b" " * MAX_REQUEST + b"}\n",
        b"[" * 2000 + b"]" * 2000 + b"\n",  # deeper than the JSON parser's recursion
        json.dumps({"v": 1, "account": "default", "bus": BUS}).encode(),  # never ends
    ],
)
def test_a_bad_late_or_oversized_request_is_refused(served: Served, request_line: bytes) -> None:
    ours, theirs = socket.socketpair()
    theirs.sendall(request_line)
    outcome = serve_connection(ours, served.server.respond, timeout=0.2)
    answer = json.loads(theirs.recv(MAX_ANSWER))
    ours.close()
    theirs.close()

    assert outcome == token_socket.BAD_REQUEST
    assert answer == {"v": 1, "refused": token_socket.BAD_REQUEST}
    assert served.reads == []


def test_a_slow_client_does_not_keep_the_next_one_waiting_long(served: Served, state: str) -> None:
    """One connection at a time, each bounded: a client that never sends is dropped."""
    silent = socket.socket(socket.AF_UNIX)
    path = token_socket.socket_path(state)
    with token_socket._address(path) as address:
        silent.connect(address)
    try:
        # The server drops the silent one after SERVER_TIMEOUT (1 s); the client waits up to 5.
        answer = ask(state, "default", BUS, timeout=5)
    finally:
        silent.close()

    assert answer is not None


def test_no_socket_or_a_stale_one_is_no_answer(state: str) -> None:
    assert ask(state, "default", BUS) is None
    stale = socket.socket(socket.AF_UNIX)
    path = token_socket.socket_path(state)
    with token_socket._address(path) as address:
        stale.bind(address)
    os.chmod(path, 0o600)
    stale.close()  # a daemon killed: the file stays, nobody listens

    assert ask(state, "default", BUS) is None
    replaced = Listener.bind(state)  # the next daemon takes its place
    assert isinstance(replaced, Listener)
    replaced.close()
    assert not os.path.lexists(path)


def test_a_socket_others_may_open_is_not_used(served: Served, state: str) -> None:
    os.chmod(token_socket.socket_path(state), 0o666)  # noqa: S103 (the point of the test)

    assert ask(state, "default", BUS) is None


class Impostor:
    """A listener that answers every client with ``reply`` (None: says nothing)."""

    def __init__(self, state: str, reply: bytes | None) -> None:
        listener = Listener.bind(state)
        assert isinstance(listener, Listener)
        self.listener = listener
        self.reply = reply
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        try:
            connection = self.listener.accept()
        except OSError:
            return
        with connection:
            connection.recv(MAX_REQUEST)
            if self.reply is not None:
                connection.sendall(self.reply)
                return
            connection.recv(1)  # until the client gives up

    def close(self) -> None:
        self.listener.close()
        self.thread.join(5)


@pytest.mark.parametrize(
    "reply",
    [
        None,  # a hung daemon: the client's own timeout
        b'{"v": 2, "document": {"access_token": "x"}}\n',  # a newer protocol
        b'{"v": 1, "document": "x"}\n',
        b"HTTP/1.0 400 Bad Request\r\n\r\n",  # something else entirely
        b'{"v": 1, "document": {"a": "' + b"x" * MAX_ANSWER + b'"}}\n',  # unbounded
    ],
)
def test_a_daemon_that_does_not_speak_version_1_is_no_answer(
    state: str, reply: bytes | None
) -> None:
    impostor = Impostor(state, reply)
    try:
        assert ask(state, "default", BUS, timeout=0.3) is None
    finally:
        impostor.close()


def test_a_second_daemon_leaves_a_live_socket_alone(served: Served, state: str) -> None:
    assert Listener.bind(state) == "another daemon answers there"
    assert ask(state, "default", BUS) is not None


def test_something_else_at_the_sockets_name_is_left_alone(state: str) -> None:
    path = token_socket.socket_path(state)
    Path(path).write_text("mine")
    os.chmod(path, 0o600)

    assert "not a socket of ours" in str(Listener.bind(state))
    assert Path(path).read_text() == "mine"


def test_the_log_never_holds_the_answer(state: str) -> None:
    import io  # noqa: PLC0415

    from tvmaniac_refreshd.core.logs import configure_logging  # noqa: PLC0415

    out = io.StringIO()
    configure_logging(1, daemon=True, stream=out, environ={})
    running = Served(state)
    running.server.start()
    try:
        assert ask(state, "default", BUS) is not None
        assert ask(state, "stranger", BUS) is None
    finally:
        running.server.close()

    assert "token_socket.request" in out.getvalue()
    assert "access-1" not in out.getvalue()
    assert "refresh-1" not in out.getvalue()


def test_a_bug_in_an_answer_leaves_the_server_answering(state: str) -> None:
    running = Served(state)
    failures = [RuntimeError("a bug")]

    def read(account: str) -> Mapping[str, object] | None:
        if failures:
            raise failures.pop()
        return public_document(json.dumps(STORED))

    running.server._read = read
    running.server.start()
    try:
        assert ask(state, "default", BUS) is None  # that client falls back
        assert ask(state, "default", BUS) is not None  # and the next one is answered
    finally:
        running.server.close()


class TestTheRule:
    """Where the daemon answers: under gnome-keyring only (runtime/token_answers.py)."""

    @staticmethod
    def runtime(backend: str = "keyring") -> object:
        from types import SimpleNamespace  # noqa: PLC0415

        store = SimpleNamespace(backend=backend)
        return SimpleNamespace(config=SimpleNamespace(store=store), environ={})

    @staticmethod
    def owner(program: str) -> object:
        from tvmaniac_refreshd.storage.secret_service_owner import SecretServiceOwner  # noqa: PLC0415

        return SecretServiceOwner(program, "x", 1)

    @pytest.mark.parametrize(
        ("program", "on"),
        [("gnome-keyring", True), ("KeePassXC", False), ("KWallet", False), ("another", False)],
    )
    def test_only_gnome_keyring(
        self,
        monkeypatch: pytest.MonkeyPatch,
        program: str,
        on: bool,
    ) -> None:
        from tvmaniac_refreshd.runtime import token_answers  # noqa: PLC0415

        monkeypatch.setattr(token_answers, "find_owner", lambda *_, **__: self.owner(program))
        monkeypatch.setattr(token_answers, "may_choose_backend_explicitly", lambda *_: False)

        found = token_answers.why_off(self.runtime(), "linux")  # type: ignore[arg-type]

        assert isinstance(found, str) is not on

    def test_off_elsewhere(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from tvmaniac_refreshd.runtime import token_answers  # noqa: PLC0415

        monkeypatch.setattr(
            token_answers, "find_owner", lambda *_, **__: self.owner("gnome-keyring")
        )
        monkeypatch.setattr(token_answers, "may_choose_backend_explicitly", lambda *_: False)
        runtime = self.runtime()

        assert isinstance(token_answers.why_off(runtime, "darwin"), str)  # type: ignore[arg-type]
        assert isinstance(token_answers.why_off(self.runtime("file"), "linux"), str)  # type: ignore[arg-type]
        monkeypatch.setattr(token_answers, "may_choose_backend_explicitly", lambda *_: True)
        assert isinstance(token_answers.why_off(runtime, "linux"), str)  # type: ignore[arg-type]
        monkeypatch.setattr(token_answers, "may_choose_backend_explicitly", lambda *_: False)
        monkeypatch.setattr(token_answers, "find_owner", lambda *_, **__: None)
        assert token_answers.why_off(runtime, "linux") == "no Secret Service"  # type: ignore[arg-type]

    def test_the_owner_is_checked_again_before_each_answer(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """gnome-keyring gone and KeePassXC in its place: no more answers."""
        from tvmaniac_refreshd.runtime import token_answers  # noqa: PLC0415

        programs = {1: "gnome-keyring"}
        monkeypatch.setattr(token_answers, "program_of", lambda pid: programs.get(pid, "another"))
        owners = [self.owner("KeePassXC")]
        monkeypatch.setattr(token_answers, "find_owner", lambda *_, **__: owners[0])
        gate = token_answers._Gate({}, self.owner("gnome-keyring"))  # type: ignore[arg-type]

        assert gate()
        programs.clear()  # that process is gone
        assert not gate()
