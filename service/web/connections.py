"""A client connection as the buffering web worker (service.web.worker) holds it: its request
arriving (Pending), being served from what was buffered (Prefetched), answered and half closed
while the client has not closed its side (Lingering)."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

#: Headers every answer of the service carries: the app's (service.web.api.protect) and the
#: worker's own refusals (PROTECTING, as header lines).
PROTECTING_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}
PROTECTING = "".join(f"{name}: {value}\r\n" for name, value in PROTECTING_HEADERS.items())
#: A head that has not ended within this many bytes is refused (431), as an ALB refuses one.
MAX_BUFFERED_HEAD = 64 * 1024
#: A body larger than this is not waited for: the app refuses it (413) from its Content-Length,
#: and what a server's parser still reads of it must arrive within the request's deadline. A
#: chunked body (no length to refuse it by) larger than this is refused (413) by the worker.
MAX_BUFFERED_BODY = 1024 * 1024
#: A chunk-size line (with its extensions) longer than this is broken framing.
MAX_CHUNK_LINE = 8 * 1024
#: What `Pending.body` holds for a chunked body.
CHUNKED = "chunked"
_UNFRAMED = MAX_BUFFERED_BODY + 1
_HEX = frozenset(b"0123456789abcdefABCDEF")
#: The interim answer to `Expect: 100-continue`, as gunicorn writes it.
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class Stage(Enum):
    """Where a pending request stands: arriving, whole (to be served), or one to refuse."""

    ARRIVING = "arriving"
    WHOLE = "whole"
    HEAD_TOO_LARGE = "head too large"
    BODY_TOO_LARGE = "chunked body too large"
    BROKEN = "broken chunk framing"


@dataclass
class Pending:
    """A connection whose request is still arriving."""

    sock: socket.socket
    addr: Any
    listener: socket.socket
    deadline: float
    data: bytearray = field(default_factory=bytearray)
    #: Where the head ends (the blank line), once it is here; how far it was looked for.
    head_end: int = -1
    searched: int = 0
    #: What the head says of the body: None (no body), a length, or CHUNKED.
    body: int | str | None = None
    #: The head asks for "100 Continue" before it sends its body (HTTP/1.1 only).
    expects_continue: bool = False
    #: The worker sent "100 Continue" itself, while the body was on its way.
    continued: bool = False
    #: Where the next chunk-size line of a chunked body begins.
    chunk_at: int = 0

    def stage(self) -> Stage:
        """WHOLE once its head and body are here, or once waiting longer would not help (a
        Content-Length body too large to buffer, a transfer coding other than chunked: the
        server's own parser then judges it, reading what it still needs within the request's
        deadline); a refusal for a head not ended within MAX_BUFFERED_HEAD, a chunked body
        larger than MAX_BUFFERED_BODY or broken chunk framing; else ARRIVING."""
        if self.head_end < 0 and not self._find_head():
            return Stage.HEAD_TOO_LARGE if len(self.data) > MAX_BUFFERED_HEAD else Stage.ARRIVING
        if self.body is None:
            return Stage.WHOLE
        start = self.head_end + 4
        if self.body != CHUNKED:
            assert isinstance(self.body, int)
            arrived = self.body > MAX_BUFFERED_BODY or len(self.data) - start >= self.body
            return Stage.WHOLE if arrived else Stage.ARRIVING
        self.chunk_at, done = _scan_chunks(self.data, max(self.chunk_at, start))
        if done is None:
            return Stage.BROKEN
        if done:
            return Stage.WHOLE
        return Stage.BODY_TOO_LARGE if len(self.data) - start > MAX_BUFFERED_BODY else Stage.ARRIVING

    def wants_continue(self) -> bool:
        """True when the client (whose request is arriving) waits for "100 Continue" to send its body."""
        return self.expects_continue and not self.continued

    def _find_head(self) -> bool:
        end = self.data.find(b"\r\n\r\n", max(0, self.searched - 3))
        self.searched = len(self.data)
        if end < 0:
            return False
        self.head_end = end
        self.body, self.expects_continue = _framing(bytes(self.data[:end]))
        return True


@dataclass
class Lingering:
    """An answered connection, half closed, whose client has not closed its side yet."""

    sock: socket.socket
    deadline: float
    drained: int = 0


class Prefetched:
    """The client socket as the sync worker serves its request from it.

    Its first reads return the bytes the worker already received; a read past them (a body too
    large to buffer) waits at most until the request's `deadline`, then raises TimeoutError; a
    write waits at most `send_seconds` for the client to take it. Its graceful close (gunicorn's
    `close_graceful`) hands the half-closed socket to `linger` instead of waiting in it for the
    client to close. When the worker already answered "100 Continue", gunicorn's own is not sent
    again.
    """

    def __init__(
        self,
        pending: Pending,
        linger: Callable[[socket.socket], None],
        send_seconds: float,
    ) -> None:
        self._sock, self._data, self._linger = pending.sock, bytes(pending.data), linger
        self._deadline, self._send_seconds = pending.deadline, send_seconds
        self._continued = pending.continued
        self._half_closed = False
        self._sock.settimeout(send_seconds)  # blocking again, never for ever

    def recv(self, size: int, *flags: int) -> bytes:
        if self._data:
            chunk, self._data = self._data[:size], self._data[size:]
            return chunk
        if self._half_closed:
            return b""  # the answer is sent: what still arrives is drained by the poll loop
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request did not arrive in time")
        self._sock.settimeout(left)
        return self._sock.recv(size, *flags)

    def send(self, data: bytes, *flags: int) -> int:
        if self._continued and data == CONTINUE:
            self._continued = False  # the worker sent it while the body was on its way
            return len(data)
        self._sock.settimeout(self._send_seconds)
        return self._sock.send(data, *flags)

    def sendall(self, data: bytes, *flags: int) -> None:
        self._sock.settimeout(self._send_seconds)
        self._sock.sendall(data, *flags)

    def sendfile(self, file: Any, offset: int = 0, count: int | None = None) -> int:
        self._sock.settimeout(self._send_seconds)
        return self._sock.sendfile(file, offset, count)

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
        self._sock.sendall(json_answer(status_line, reason.lower().replace(" ", "_"), reason))
        count_unparsed(status)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def json_answer(status_line: str, code: str, message: str) -> bytes:
    """A whole answer the worker writes itself, in the contract's JSON shape; the connection closes."""
    body = json.dumps({"error": code, "message": message}).encode()
    head = f"{status_line}\r\nConnection: close\r\nContent-Type: application/json\r\n{PROTECTING}"
    return f"{head}Content-Length: {len(body)}\r\n\r\n".encode("latin-1") + body


def count_unparsed(status: str) -> None:
    """Count an answer the app never saw (route "unparsed") in the answers metric."""
    from service.ops.metrics import metrics

    metrics().http_answers.labels("unparsed", status).inc()


def _framing(head: bytes) -> tuple[int | str | None, bool]:
    """What a request head says of its body (None, a Content-Length, or CHUNKED) and whether it
    expects "100 Continue". A body the worker cannot frame (a malformed length, a transfer
    coding other than chunked) reads as too large to buffer: the server's parser judges it."""
    head = head.lower()
    expects = _field(head, b"expect") == b"100-continue" and head[: head.find(b"\r\n")].endswith(b"http/1.1")
    coding = _field(head, b"transfer-encoding")
    if coding is not None:
        return (CHUNKED if coding.split(b",")[-1].strip() == b"chunked" else _UNFRAMED), expects
    length = _field(head, b"content-length")
    if length is not None:
        return (int(length) if length.isdigit() and len(length) < 16 else _UNFRAMED) or None, expects
    return None, expects


def _field(head: bytes, name: bytes) -> bytes | None:
    """The value of the first `name:` field of a lower-cased head (searched in C: every request
    pays this), None without one."""
    at = head.find(b"\r\n" + name + b":")
    if at < 0:
        return None
    start = at + len(name) + 3
    end = head.find(b"\r\n", start)
    return head[start : end if end >= 0 else len(head)].strip()


def _scan_chunks(data: bytearray, at: int) -> tuple[int, bool | None]:
    """Walk a chunked body's framing from `at` (the start of a chunk-size line): where to resume,
    and True once the last chunk and its trailers are here, False while they arrive, None when
    the framing is broken."""
    while True:
        eol = data.find(b"\r\n", at)
        if eol < 0:
            return at, None if len(data) - at > MAX_CHUNK_LINE else False
        size = bytes(data[at:eol]).split(b";", 1)[0].strip()
        if not size or len(size) > 15 or not _HEX.issuperset(size) or eol - at > MAX_CHUNK_LINE:
            return at, None
        if int(size, 16) == 0:  # the last chunk: then trailer lines, up to a blank one
            if data.find(b"\r\n\r\n", eol) >= 0:
                return at, True
            return at, None if len(data) - eol > MAX_BUFFERED_HEAD else False
        end = eol + 2 + int(size, 16)
        if len(data) < end + 2:
            return at, False
        if data[end : end + 2] != b"\r\n":
            return at, None
        at = end + 2


def receive(sock: socket.socket) -> bytes | None:
    """What a non-blocking client socket has for us: None if nothing yet, b"" once it closed
    (or failed)."""
    try:
        return sock.recv(65536)
    except (BlockingIOError, InterruptedError):
        return None
    except OSError:
        return b""
