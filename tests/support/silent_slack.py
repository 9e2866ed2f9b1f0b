"""A Slack stand-in that accepts connections and never answers, until a test releases it.

A real TCP server on loopback: it reads each request whole and then holds the connection
without a byte of answer (as a Slack, or a proxy in front of it, that hangs does), so the
client waits for its own timeout. After `release()` it answers every held and new request
200 "ok", as Slack's incoming webhook does, and keeps the JSON bodies it answered.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from typing import Any


class SilentSlack:
    """Accepts and holds every request; `on_request` sees each body as it arrives, before the hold."""

    def __init__(self, on_request: Callable[[dict[str, Any]], None] | None = None) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}/services/T000/B000/silent"
        self._on_request = on_request
        self._released = threading.Event()
        self._lock = threading.Lock()
        self.received: list[dict[str, Any]] = []
        self.answered: list[dict[str, Any]] = []
        self._connections: list[socket.socket] = []
        threading.Thread(target=self._accept, name="silent-slack", daemon=True).start()

    def release(self) -> None:
        """From now on, answer every request (those held included)."""
        self._released.set()

    def wait_received(self, count: int, timeout: float) -> list[dict[str, Any]]:
        """Wait until `count` requests have arrived (answered or not); return their bodies."""
        end = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < end:
            time.sleep(0.05)
        return list(self.received)

    def close(self) -> None:
        """Stop listening and drop every held connection."""
        self._server.close()
        with self._lock:
            for conn in self._connections:
                conn.close()

    def __enter__(self) -> SilentSlack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return  # closed
            with self._lock:
                self._connections.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            body = _read_request(conn)
            if self._on_request is not None:
                self._on_request(body)
            with self._lock:
                self.received.append(body)
            self._released.wait()
            # Recorded before the answer leaves: once the client has it, it may send its next
            # request, whose thread must not record it first (the order is what tests compare).
            with self._lock:
                self.answered.append(body)
            try:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok")
            except OSError:
                with self._lock:
                    self.answered.remove(body)
                raise
        except OSError:
            return  # the client gave up (its timeout) or the test closed us
        finally:
            conn.close()


def _read_request(conn: socket.socket) -> dict[str, Any]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            raise OSError("connection closed before the request ended")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    headers = [line.lower() for line in head.split(b"\r\n")]
    length = next((int(h.split(b":", 1)[1]) for h in headers if h.startswith(b"content-length:")), 0)
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            raise OSError("connection closed before the body ended")
        body += chunk
    parsed: dict[str, Any] = json.loads(body or b"{}")
    return parsed
