"""A real HTTP proxy on 127.0.0.1 that forwards to the service or injects failures on demand.

Each request takes the next planned `Step` (then `default`): forward it, answer for the service
(e.g. 503 with Retry-After), forward but answer late (past the client's timeout), or drop the
connection. `refuse_for` keeps the port closed at first, so connections are refused.
"""

from __future__ import annotations

import collections
import http.client
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

PASSED_HEADERS = ("Content-Type", "Retry-After", "Location")


@dataclass(frozen=True)
class Step:
    """What the proxy does with one request."""

    kind: str = "forward"  # forward | answer | slow | drop
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


def forward() -> Step:
    """Pass the request to the upstream and its answer back."""
    return Step("forward")


def answer(status: int, body: bytes = b"", **headers: str) -> Step:
    """Answer by itself, as a failing load balancer or instance would."""
    headers.setdefault("Content-Type", "application/json")
    return Step("answer", status, body, {k.replace("_", "-"): v for k, v in headers.items()})


def slow(delay: float) -> Step:
    """Forward, then hold the upstream's answer back for `delay` seconds."""
    return Step("slow", delay=delay)


def drop() -> Step:
    """Close the connection without answering."""
    return Step("drop")


@dataclass(frozen=True)
class Seen:
    """One request as the proxy received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


class FaultProxy:
    """Forwards to `upstream` (a base URL) following a plan of `Step`s; records every request."""

    def __init__(
        self, upstream: str | None = None, default: Step | None = None, refuse_for: float = 0.0
    ) -> None:
        self.upstream = upstream
        self.refuse_for = refuse_for
        self.default = default or (forward() if upstream else answer(502, b"no upstream"))
        self.seen: list[Seen] = []
        self._plan: collections.deque[Step] = collections.deque()
        self._lock = threading.Lock()
        # Reserve a free port now so the URL is known before the listener exists.
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: ThreadingHTTPServer | None = None
        self._opened = threading.Event()

    def plan(self, *steps: Step) -> FaultProxy:
        """Queue steps for the next requests, in order."""
        with self._lock:
            self._plan.extend(steps)
        return self

    def start(self) -> FaultProxy:
        """Listen now, or after `refuse_for` seconds (connections until then are refused)."""
        if self.refuse_for:
            threading.Timer(self.refuse_for, self._open).start()
        else:
            self._open()
        return self

    def stop(self) -> None:
        """Stop listening."""
        self._opened.wait(10)
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    def _next(self) -> Step:
        with self._lock:
            return self._plan.popleft() if self._plan else self.default

    def _open(self) -> None:
        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), _handler_for(self))
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        self._opened.set()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _handler_for(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._handle()

        def do_POST(self) -> None:
            self._handle()

        def _handle(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with proxy._lock:
                proxy.seen.append(Seen(self.command, self.path, dict(self.headers), body, time.monotonic()))
            step = proxy._next()
            if step.kind == "drop":
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if step.kind == "answer":
                self._reply(step.status, step.headers, step.body)
                return
            status, headers, payload = self._forward(body)
            time.sleep(step.delay)
            try:
                self._reply(status, headers, payload)
            except OSError:
                pass  # the client gave up waiting, which is what a slow step is for

        def _forward(self, body: bytes) -> tuple[int, dict[str, str], bytes]:
            target = urlsplit(proxy.upstream or "")
            conn = http.client.HTTPConnection(target.hostname or "", target.port, timeout=30)
            try:
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                conn.request(self.command, self.path, body=body, headers=headers)
                response = conn.getresponse()
                passed = {k: v for k in PASSED_HEADERS if (v := response.getheader(k))}
                return response.status, passed, response.read()
            finally:
                conn.close()

        def _reply(self, status: int, headers: dict[str, str], payload: bytes) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
