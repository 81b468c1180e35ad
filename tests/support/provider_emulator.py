"""The HTTP half of the Google and Microsoft emulations: a loopback server in a thread.

An emulation is a ``Routes`` object: ``handle`` gets one parsed request and returns the status,
headers and body its provider documents. This module only serves it, records every request
(path and form, for assertions), and keeps any exception a route raised in ``errors`` (the
fixtures assert it stays empty: an emulator bug must fail the test, not pass it).
"""

from __future__ import annotations

import json
import secrets
import string
import threading
import traceback
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Protocol, Self
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, str]
    form: dict[str, str]
    headers: dict[str, str]  # lower-case names


@dataclass
class Reply:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def json_reply(status: int, body: object, **headers: str) -> Reply:
    return Reply(
        status,
        json.dumps(body).encode(),
        {"Content-Type": "application/json; charset=utf-8", "Cache-Control": "no-store", **headers},
    )


def redirect(location: str) -> Reply:
    return Reply(302, b"", {"Location": location})


def random_text(length: int, alphabet: str = string.ascii_letters + string.digits + "-_") -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


class Routes(Protocol):
    def handle(self, request: Request) -> Reply: ...


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        form: dict[str, str] = {}
        if "x-www-form-urlencoded" in self.headers.get("Content-Type", ""):
            # A repeated parameter is an error at every OAuth server (RFC 6749 §3.1): keep the
            # first but let the route see that it was repeated.
            for key, values in parse_qs(raw.decode(), keep_blank_values=True).items():
                form[key] = values[0] if len(values) == 1 else "\0repeated"
        request = Request(
            method=self.command,
            path=parts.path,
            query={k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()},
            form=form,
            headers={key.lower(): value for key, value in self.headers.items()},
        )
        self.server.requests.append(request)
        try:
            reply = self.server.routes.handle(request)
        except Exception:  # kept for the fixture to fail the test with
            self.server.errors.append(traceback.format_exc())
            reply = Reply(500, b"emulator error")
        self.server.statuses.append((request, reply.status))
        self.send_response(reply.status)
        for key, value in reply.headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)

    do_GET = _serve
    do_POST = _serve

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the suite's output is not the place for request lines."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, routes: Routes) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.routes = routes
        self.requests: list[Request] = []
        self.statuses: list[tuple[Request, int]] = []  # each request with its answer's status
        self.errors: list[str] = []


class ServedEmulator:
    """Runs ``self`` (a ``Routes``) on a free loopback port while in a ``with`` block."""

    _server: _Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def requests(self) -> list[Request]:
        return [] if self._server is None else self._server.requests

    @property
    def statuses(self) -> list[tuple[Request, int]]:
        return [] if self._server is None else self._server.statuses

    @property
    def errors(self) -> list[str]:
        return [] if self._server is None else self._server.errors

    def __enter__(self) -> Self:
        self._server = _Server(self)  # type: ignore[arg-type]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def requests_to(self, path_end: str) -> list[Request]:
        return [request for request in self.requests if request.path.endswith(path_end)]


def basic_credentials(request: Request) -> tuple[str, str] | None:
    """Return the (client_id, client_secret) of an ``Authorization: Basic`` header."""
    import base64  # noqa: PLC0415
    from urllib.parse import unquote_plus  # noqa: PLC0415

    header = request.headers.get("authorization", "")
    if not header.lower().startswith("basic "):
        return None
    try:
        pair = base64.b64decode(header[6:], validate=True).decode()
    except ValueError:
        return None
    user, _, password = pair.partition(":")
    # RFC 6749 §2.3.1: both parts are form-encoded before the Basic encoding.
    return unquote_plus(user), unquote_plus(password)
