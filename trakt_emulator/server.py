"""The HTTP front: a threaded loopback server that writes Replies and carries out edge faults."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import socket
import socketserver
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from trakt_emulator import pages
from trakt_emulator.faults import Decision, Delay, Drop, EdgeLayer, Respond, Trickle, Truncate
from trakt_emulator.oauth import OAuthApp
from trakt_emulator.replies import Reply, json_reply
from trakt_emulator.state import State

CONTROL_PREFIX = "/_emulator/"
MAX_BODY = 1024 * 1024
LOGGED_BODY_BYTES = 64 * 1024


@dataclasses.dataclass(frozen=True)
class Backend:
    """What the handler needs: the state, the edge layer, the app and the control dispatcher."""

    state: State
    edge: EdgeLayer
    app: OAuthApp
    control: Callable[[str, str, bytes], Reply]


class EmulatorServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer that can cut its own connections, so stop() never hangs."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], backend: Backend) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.backend = backend
        self.stopping = threading.Event()
        self.errors: list[str] = []
        self._track = threading.Lock()
        self._handler_threads: set[threading.Thread] = set()
        self._connections: set[socket.socket] = set()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        """Bind without HTTPServer's reverse-DNS lookup, which can stall on some hosts."""
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def process_request(
        self,
        request: socket.socket | tuple[bytes, socket.socket],
        client_address: object,
    ) -> None:
        """Serve each connection in a tracked daemon thread."""
        thread = threading.Thread(
            target=self._serve,
            args=(request, client_address),
            name="trakt-emulator-connection",
            daemon=True,
        )
        with self._track:
            self._handler_threads.add(thread)
            if isinstance(request, socket.socket):
                self._connections.add(request)
        thread.start()

    def _serve(
        self,
        request: socket.socket | tuple[bytes, socket.socket],
        client_address: object,
    ) -> None:
        try:
            self.process_request_thread(request, client_address)
        finally:
            with self._track:
                self._handler_threads.discard(threading.current_thread())
                if isinstance(request, socket.socket):
                    self._connections.discard(request)

    def handle_error(
        self,
        request: socket.socket | tuple[bytes, socket.socket],
        client_address: object,
    ) -> None:
        """Stay quiet: clients hanging up mid-response is routine under fault injection."""

    def open_connections(self) -> int:
        """How many connections are being served (a request may still be in progress)."""
        with self._track:
            return len(self._handler_threads)

    def close_connections(self, timeout: float) -> None:
        """Wake sleeping faults, cut every open connection and wait for the handler threads."""
        self.stopping.set()
        with self._track:
            connections, threads = list(self._connections), list(self._handler_threads)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(deadline - time.monotonic(), 0.0))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Bounds how long an idle keep-alive connection or a stalled client holds a thread.
    timeout = 15.0
    server: EmulatorServer

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; without this, Nagle plus the client's
        # delayed ACK adds ~40 ms to every response with a body.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def version_string(self) -> str:
        return "cloudflare"

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the request log is in the emulator's state, not on stderr."""

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        started = time.perf_counter()
        path = urlsplit(self.path).path or "/"
        body = self._read_body(started)
        if body is None:
            return
        backend = self.server.backend
        if path.startswith(CONTROL_PREFIX):
            self._send(backend.control(self.command, path, body), started)
            return
        headers = {name.lower(): value for name, value in self.headers.items()}
        entry = backend.state.log_request(self.command, self.path, headers, _loggable(body))
        decision = backend.edge.intercept(path, headers)
        if decision is not None:
            backend.state.count("cf_blocked" if decision.kind == "cf_blocked" else "faults")
        status, respond = self._plan(decision, path, headers, body, started)
        # Record the outcome before the first byte goes out: a client that has its answer
        # may read the request log at once, and must find the status already there.
        backend.state.finish_request(entry, status, decision.kind if decision else None)
        respond()

    def _plan(
        self,
        decision: Decision | None,
        path: str,
        headers: dict[str, str],
        body: bytes,
        started: float,
    ) -> tuple[int | None, Callable[[], None]]:
        """The status to log and the writer that sends it (nothing, for a dropped request)."""
        action = decision.action if decision is not None else None
        if isinstance(action, Delay):
            if self.server.stopping.wait(action.draw()):
                self.close_connection = True
                return None, _send_nothing
            action = None
        if isinstance(action, Drop):
            self.close_connection = True
            return None, _send_nothing
        if isinstance(action, Trickle):
            return action.reply.status, functools.partial(self._trickle, action, started)
        if isinstance(action, Truncate):
            return action.reply.status, functools.partial(
                self._send,
                action.reply,
                started,
                declared_length=action.declared_length,
                close=True,
            )
        reply = action.reply if isinstance(action, Respond) else self._app(path, headers, body)
        return reply.status, functools.partial(self._send, reply, started)

    def _app(self, path: str, headers: dict[str, str], body: bytes) -> Reply:
        try:
            query = urlsplit(self.path).query
            return self.server.backend.app.handle(self.command, path, headers, body, query)
        except Exception as exc:
            # An emulator bug must surface in the test, not as a silently dropped connection.
            self.server.errors.append(repr(exc))
            return json_reply(500, {"error": "emulator_error", "error_description": repr(exc)})

    def _send(
        self,
        reply: Reply,
        started: float,
        *,
        declared_length: int | None = None,
        close: bool = False,
        write_body: bool = True,
    ) -> None:
        self.send_response(reply.status, reply.reason)
        self.send_header("CF-Ray", pages.cf_ray())
        if reply.content_type is not None:
            self.send_header("Content-Type", reply.content_type)
        if reply.app:
            self.send_header("X-Request-Id", str(uuid.uuid4()))
            self.send_header("X-Runtime", f"{time.perf_counter() - started:.6f}")
        for name, value in reply.headers:
            self.send_header(name, value)
        length = len(reply.body) if declared_length is None else declared_length
        self.send_header("Content-Length", str(length))
        if close:
            self.send_header("Connection", "close")
        self.end_headers()
        if write_body:
            self.wfile.write(reply.body)

    def _trickle(self, action: Trickle, started: float) -> None:
        self._send(action.reply, started, close=True, write_body=False)
        deadline = time.monotonic() + action.max_seconds
        for index, byte in enumerate(action.reply.body):
            if index and (
                time.monotonic() + action.interval > deadline
                or self.server.stopping.wait(action.interval)
            ):
                return
            self.wfile.write(bytes((byte,)))

    def _read_body(self, started: float) -> bytes | None:
        try:
            return self._receive()
        except ValueError as exc:
            status = 413 if "large" in str(exc) else 400
            self._send(
                json_reply(status, {"error": "invalid_request", "error_description": str(exc)}),
                started,
                close=True,
            )
            return None

    def _receive(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        length = int(self.headers.get("Content-Length") or 0)
        if not 0 <= length <= MAX_BODY:
            raise ValueError("request body too large")
        return self.rfile.read(length)

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            size = int(self.rfile.readline(1024).split(b";")[0].strip() or b"x", 16)
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(chunks)
            total += size
            if total > MAX_BODY:
                raise ValueError("request body too large")
            chunks.append(self.rfile.read(size))
            self.rfile.readline(1024)


def _send_nothing() -> None:
    pass


def _loggable(body: bytes) -> object:
    if not body:
        return None
    if len(body) <= LOGGED_BODY_BYTES:
        try:
            parsed: object = json.loads(body.decode("utf-8"))
        except ValueError:
            pass
        else:
            return parsed
    return body[:LOGGED_BODY_BYTES].decode("utf-8", errors="replace")
