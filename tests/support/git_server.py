"""A real git smart-HTTP server on loopback: ``git http-backend`` (CGI) behind a small Python
HTTP server that lets a request through only with an access token the OAuth2 server vouches for.

The token arrives as HTTP Basic credentials (user name anything, password the token), or as
``Authorization: Bearer``; either is checked by the OAuth2 server's introspection endpoint, the
resource server's view (RFC 7662). Without a valid token the answer is ``401`` with a
``WWW-Authenticate: Basic`` challenge, which is what makes git ask its credential helpers.
"""

from __future__ import annotations

import base64
import os
import subprocess
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit


class GitServer:
    """Serves every repository under ``root`` at ``http://127.0.0.1:PORT/NAME.git``."""

    def __init__(self, root: Path, *, token_is_active: Callable[[str], bool]) -> None:
        self.root = root
        self.token_is_active = token_is_active
        self.accepted: list[tuple[str, str]] = []  # (user name, token) of each let-through
        self.refused = 0
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.handle(self)

            def do_POST(self) -> None:
                server.handle(self)

            def log_message(self, format: str, *args: object) -> None:
                pass  # quiet: pytest shows nothing useful from it

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._http.server_address[1]}"

    @property
    def host(self) -> str:
        """As git names it in a credential request: host and port."""
        return f"127.0.0.1:{self._http.server_address[1]}"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._thread.join(timeout=10)

    def create_repository(self, name: str, files: dict[str, str]) -> None:
        """A bare repository ``name.git`` holding one commit of ``files``."""
        work = self.root / f"{name}-work"
        work.mkdir(parents=True)
        for path, text in files.items():
            (work / path).write_text(text)
        env = {
            **os.environ,
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@example.invalid",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@example.invalid",
        }
        for argv in (
            ["git", "init", "-q", "-b", "main", str(work)],
            ["git", "-C", str(work), "add", "."],
            ["git", "-C", str(work), "commit", "-q", "-m", "first"],
            ["git", "clone", "-q", "--bare", str(work), str(self.root / f"{name}.git")],
        ):
            subprocess.run(argv, env=env, check=True, capture_output=True, timeout=30)

    def _credentials(self, header: str) -> tuple[str, str] | None:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value:
            return "", value.strip()
        if scheme.lower() != "basic":
            return None
        try:
            user, colon, password = base64.b64decode(value).decode().partition(":")
        except ValueError:
            return None
        return (user, password) if colon and password else None

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        found = self._credentials(request.headers.get("Authorization", ""))
        if found is None or not self.token_is_active(found[1]):
            with self._lock:
                self.refused += 1
            request.send_response(401)
            request.send_header("WWW-Authenticate", 'Basic realm="git"')
            request.send_header("Content-Length", "0")
            request.end_headers()
            return
        with self._lock:
            self.accepted.append(found)
        self._run_backend(request, user=found[0] or "token")

    def _run_backend(self, request: BaseHTTPRequestHandler, *, user: str) -> None:
        parts = urlsplit(request.path)
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else b""
        env = {
            "PATH": os.environ.get("PATH", os.defpath),
            "GIT_PROJECT_ROOT": str(self.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "REQUEST_METHOD": request.command,
            "PATH_INFO": parts.path,
            "QUERY_STRING": parts.query,
            "CONTENT_TYPE": request.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": user,
            "REMOTE_ADDR": "127.0.0.1",
            "GATEWAY_INTERFACE": "CGI/1.1",
        }
        if request.headers.get("Content-Encoding"):
            env["HTTP_CONTENT_ENCODING"] = request.headers["Content-Encoding"]
        if request.headers.get("Git-Protocol"):
            env["GIT_PROTOCOL"] = request.headers["Git-Protocol"]
        result = subprocess.run(
            ["git", "http-backend"],
            input=body,
            env=env,
            capture_output=True,
            timeout=60,
            check=False,
        )
        head, blank, payload = result.stdout.partition(b"\r\n\r\n")
        if not blank:  # http-backend ends its CGI headers with bare newlines
            head, blank, payload = result.stdout.partition(b"\n\n")
        status = 200
        headers = []
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers.append((name, value.strip()))
        request.send_response(status)
        for name, value in headers:
            request.send_header(name, value)
        request.send_header("Content-Length", str(len(payload)))
        request.end_headers()
        request.wfile.write(payload)
