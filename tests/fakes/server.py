"""A loopback HTTPS server (``trustme`` certificates) that routes requests to stateful fakes.

Why HTTPS and not plain HTTP: azure-core's BearerTokenCredentialPolicy refuses to send a token
over plain HTTP, so the clients are exercised exactly as in production: TLS, a bearer token,
retries, through the real ``RequestsTransport``; only the certificate authority is the test's.
"""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import trustme


@dataclass
class Answer:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Received:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: Any


Handler = Callable[[Received], Answer]


@dataclass
class Fault:
    """Answer the next *times* requests matching *method* and *path_part* with *answer* instead."""

    method: str
    path_part: str
    answer: Answer
    times: int = 1
    body_part: str = ""


class LoopbackHTTPS:
    """One HTTPS server on a free loopback port; ``route(prefix, handler)`` adds a fake service."""

    def __init__(self, tmp: Path) -> None:
        self.ca = trustme.CA()
        cert = self.ca.issue_cert("127.0.0.1", "localhost")
        self.ca_file = tmp / "fake-ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        self.routes: list[tuple[str, Handler]] = []
        self.received: list[Received] = []
        self.faults: list[Fault] = []
        self.lock = threading.Lock()
        outer = self

        class RequestHandler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode("utf-8", "replace")
                parts = urlsplit(self.path)
                request = Received(self.command, parts.path, parts.query, {k: v for k, v in self.headers.items()}, body)
                answer = outer.dispatch(request, raw)
                payload = b"" if answer.body is None else json.dumps(answer.body).encode("utf-8")
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                if payload:
                    self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PATCH = do_DELETE = _handle

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), RequestHandler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        cert.configure_cert(context)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def origin(self) -> str:
        return f"https://127.0.0.1:{self.httpd.server_address[1]}"

    def route(self, prefix: str, handler: Handler) -> None:
        self.routes.append((prefix, handler))

    def fail(
        self,
        method: str,
        path_part: str,
        status: int,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        times: int = 1,
        body_part: str = "",
    ) -> None:
        with self.lock:
            self.faults.append(Fault(method, path_part, Answer(status, body, headers or {}), times, body_part))

    def dispatch(self, request: Received, raw: bytes) -> Answer:
        with self.lock:
            self.received.append(request)
            for fault in self.faults:
                if (
                    fault.times > 0
                    and fault.method == request.method
                    and fault.path_part in request.path
                    and fault.body_part.encode() in raw
                ):
                    fault.times -= 1
                    return fault.answer
            for prefix, handler in self.routes:
                if request.path.startswith(prefix):
                    return handler(request)
        return Answer(404, {"error": {"code": "NotFound", "message": f"no route for {request.path}"}})

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@contextmanager
def running(tmp: Path) -> Iterator[LoopbackHTTPS]:
    server = LoopbackHTTPS(tmp)
    server.start()
    try:
        yield server
    finally:
        server.stop()
