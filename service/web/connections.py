"""A client connection as the buffering web worker (service.web.worker) holds it: its request
arriving (Pending), being served from what was buffered (Prefetched), answered and half closed
while the client has not closed its side (Lingering)."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

#: Headers every answer of the service carries: the app's (service.web.api.protect) and the
#: worker's own refusals (PROTECTING, as header lines).
PROTECTING_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}
PROTECTING = "".join(f"{name}: {value}\r\n" for name, value in PROTECTING_HEADERS.items())
#: A head larger than this is handed over unfinished: gunicorn's own limits then refuse it.
MAX_BUFFERED_HEAD = 64 * 1024
#: A body larger than this is not waited for: the app refuses it (413) from its Content-Length.
MAX_BUFFERED_BODY = 1024 * 1024


@dataclass
class Pending:
    """A connection whose request is still arriving."""

    sock: socket.socket
    addr: Any
    listener: socket.socket
    deadline: float
    data: bytearray = field(default_factory=bytearray)

    def whole(self) -> bool:
        """True once the head and the announced body are here (or waiting longer would not help)."""
        end = self.data.find(b"\r\n\r\n")
        if end < 0:
            return len(self.data) > MAX_BUFFERED_HEAD
        head = bytes(self.data[:end]).lower()
        if b"\nexpect:" in head or b"\ntransfer-encoding:" in head:
            # The client waits for "100 Continue" (sent once the request is served), or streams a
            # chunked body of unknown length: serve it now, as the plain sync worker would.
            return True
        length = _content_length(head)
        return length is None or length > MAX_BUFFERED_BODY or len(self.data) - end - 4 >= length


@dataclass
class Lingering:
    """An answered connection, half closed, whose client has not closed its side yet."""

    sock: socket.socket
    deadline: float
    drained: int = 0


class Prefetched:
    """The client socket, whose first reads return the bytes the worker already received, and
    whose graceful close (gunicorn's `close_graceful`) hands the half-closed socket to `linger`
    instead of waiting in it for the client to close."""

    def __init__(self, sock: socket.socket, data: bytes, linger: Callable[[socket.socket], None]) -> None:
        self._sock, self._data, self._linger = sock, data, linger
        self._half_closed = False

    def recv(self, size: int, *flags: int) -> bytes:
        if self._data:
            chunk, self._data = self._data[:size], self._data[size:]
            return chunk
        if self._half_closed:
            return b""  # the answer is sent: what still arrives is drained by the poll loop
        return self._sock.recv(size, *flags)

    def shutdown(self, how: int) -> None:
        self._sock.shutdown(how)
        self._half_closed = self._half_closed or how == socket.SHUT_WR

    def close(self) -> None:
        if self._half_closed:
            self._linger(self._sock)
        else:
            self._sock.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class JsonErrorPage:
    """The client socket while gunicorn answers a request it could not parse: JSON, not HTML."""

    def __init__(self, sock: Any) -> None:
        self._sock = sock

    def sendall(self, data: bytes, *flags: int) -> None:
        status_line = data.split(b"\r\n", 1)[0].decode("latin-1")
        _, status, reason = [*status_line.split(" ", 2), "", ""][:3]
        if not status.isdigit() or b"Content-Type: text/html" not in data:
            self._sock.sendall(data, *flags)
            return
        body = json.dumps({"error": reason.lower().replace(" ", "_"), "message": reason}).encode()
        head = f"{status_line}\r\nConnection: close\r\nContent-Type: application/json\r\n{PROTECTING}"
        self._sock.sendall(f"{head}Content-Length: {len(body)}\r\n\r\n".encode("latin-1") + body)
        count_unparsed(status)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def count_unparsed(status: str) -> None:
    """Count an answer the app never saw (route "unparsed") in the answers metric."""
    from service.ops.metrics import metrics

    metrics().http_answers.labels("unparsed", status).inc()


def _content_length(head: bytes) -> int | None:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip() == b"content-length":
            text = value.strip()
            return int(text) if text.isdigit() and len(text) < 16 else MAX_BUFFERED_BODY + 1
    return None


def receive(sock: socket.socket) -> bytes | None:
    """What a non-blocking client socket has for us: None if nothing yet, b"" once it closed
    (or failed)."""
    try:
        return sock.recv(65536)
    except (BlockingIOError, InterruptedError):
        return None
    except OSError:
        return b""
