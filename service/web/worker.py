"""gunicorn's sync worker, made to receive each request whole before it serves it (slow clients).

gunicorn's `sync` worker reads a request while it blocks on it: a client that sends its headers
one byte a second holds a worker until gunicorn's `timeout` kills it, and two such clients starve
a small instance (`/healthz` goes unanswered). This worker accepts connections and buffers what
they send, many at once, in one poll loop; only a request that arrived whole (its head, and the
body its Content-Length announces) is handed to the sync worker's own handling. A client that
has not sent its request within REQUEST_READ_SECONDS is answered `408` and closed. gunicorn's own
refusals of requests it cannot parse (400, 414, 431) are answered in the contract's JSON too.

Requests are still served one at a time, in the worker's only thread, as the sync worker does:
a thread per slow client (gthread) would only raise the number of clients it takes to starve a
worker, while a buffered client costs a socket and its bytes.
"""

from __future__ import annotations

import errno
import json
import os
import selectors
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from gunicorn.workers.sync import SyncWorker  # type: ignore[import-untyped]

from service.errors import ConfigError
from service.ledger.budget import let_go_where_wanted

READ_ENV = "REQUEST_READ_SECONDS"
DEFAULT_READ_SECONDS = 10.0
#: A head larger than this is handed over unfinished: gunicorn's own limits then refuse it.
MAX_BUFFERED_HEAD = 64 * 1024
#: A body larger than this is not waited for: the app refuses it (413) from its Content-Length.
MAX_BUFFERED_BODY = 1024 * 1024
#: Connections one worker buffers at once (fds are finite). Past it, the oldest is answered 408
#: if it has been sending for SLOW_AFTER seconds; while every one is newer, new connections wait
#: in the kernel's backlog (a burst of whole requests is served, never refused).
MAX_PENDING = 256
SLOW_AFTER = 1.0
#: Connections one worker accepts per wake-up (the listener stays readable while more wait).
ACCEPT_BATCH = 16
_TIMEOUT_BODY = b'{"error": "request_timeout", "message": "the request did not arrive in time"}'
_TIMEOUT_ANSWER = (
    b"HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(_TIMEOUT_BODY), _TIMEOUT_BODY)
)


def read_seconds(environ: dict[str, str] | None = None) -> float:
    """REQUEST_READ_SECONDS: how long a client may take to send its whole request."""
    raw = (os.environ if environ is None else environ).get(READ_ENV, "").strip()
    if not raw:
        return DEFAULT_READ_SECONDS
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{READ_ENV} must be a number of seconds, got {raw!r}") from None
    if not 0.5 <= value <= 300:
        raise ConfigError(f"{READ_ENV} must be between 0.5 and 300 seconds, got {raw!r}")
    return value


@dataclass
class _Pending:
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


class _Prefetched:
    """The client socket, whose first reads return the bytes the worker already received."""

    def __init__(self, sock: socket.socket, data: bytes) -> None:
        self._sock, self._data = sock, data

    def recv(self, size: int, *flags: int) -> bytes:
        if self._data:
            chunk, self._data = self._data[:size], self._data[size:]
            return chunk
        return self._sock.recv(size, *flags)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class _JsonErrorPage:
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
        head = f"{status_line}\r\nConnection: close\r\nContent-Type: application/json\r\n"
        self._sock.sendall(f"{head}Content-Length: {len(body)}\r\n\r\n".encode("latin-1") + body)
        _count(status)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class BufferingSyncWorker(SyncWorker):  # type: ignore[misc]  # gunicorn ships no type hints
    """A sync worker that serves only requests that arrived whole; slow clients cost it a buffer."""

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        """gunicorn's own answer to a request it cannot parse (400, 414, 431, ...), as contract JSON."""
        super().handle_error(req, _JsonErrorPage(client), addr, exc)

    def run(self) -> None:
        """Poll the listeners and the pending connections; serve each whole request in turn."""
        if self.cfg.is_ssl:  # TLS records are not requests: buffer nothing, as the sync worker does
            super().run()
            return
        self._read_seconds = read_seconds()
        self._pending: dict[int, _Pending] = {}
        self._selector = selectors.DefaultSelector()
        for listener in self.sockets:
            listener.setblocking(False)
        self._listening = False
        self._listen(True)
        self._selector.register(self.PIPE[0], selectors.EVENT_READ, None)
        try:
            while self.alive and self.is_parent_alive():
                self.notify()
                self._poll()
                # Idle or between requests: the ledger connection goes to whoever waits for one.
                let_go_where_wanted()
        finally:
            for pending in list(self._pending.values()):
                self._drop(pending)
            self._selector.close()

    def _poll(self) -> None:
        now = time.monotonic()
        self._listen(self._room(now))
        wait = min([1.0, *(p.deadline - now for p in self._pending.values())])
        listeners = []
        for key, _ in self._selector.select(max(0.0, wait)):
            if key.data is None:
                _drain_pipe(self.PIPE[0])
            elif isinstance(key.data, _Pending):
                self._receive(key.data)
            else:
                listeners.append(key.data)
        # New connections after what the buffered ones sent: `_room` then judges them up to date.
        for listener in listeners:
            self._accept(listener)
        for pending in [p for p in self._pending.values() if p.whole()]:
            self._serve(pending)
            if not self.alive:
                return
        now = time.monotonic()
        for pending in [p for p in self._pending.values() if p.deadline <= now]:
            self._refuse(pending)

    def _accept(self, listener: socket.socket) -> None:
        # A few at a time, not the whole backlog: the rest wait in the kernel's queue, where the
        # instance's other workers (woken too) take their share. A worker that took all of a
        # 1,000-delivery storm went past MAX_PENDING and answered the oldest 408 while its
        # siblings idled.
        for _ in range(ACCEPT_BATCH):
            if not self._room(time.monotonic()):
                return  # every buffered client is new: the rest wait in the kernel's backlog
            try:
                sock, addr = listener.accept()
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.ECONNABORTED):
                    return
                raise
            sock.setblocking(False)
            if len(self._pending) >= MAX_PENDING:
                self._refuse(self._oldest())  # a slow client makes room for the new one
            pending = _Pending(sock, addr, listener, time.monotonic() + self._read_seconds)
            self._pending[sock.fileno()] = pending
            self._selector.register(sock, selectors.EVENT_READ, pending)

    def _room(self, now: float) -> bool:
        """Whether to take more connections: fewer than MAX_PENDING are buffered, or the oldest has
        been sending for SLOW_AFTER seconds (a slow client, which makes room for a new one)."""
        if len(self._pending) < MAX_PENDING:
            return True
        return now - (self._oldest().deadline - self._read_seconds) >= SLOW_AFTER

    def _oldest(self) -> _Pending:
        return min(self._pending.values(), key=lambda p: p.deadline)

    def _listen(self, on: bool) -> None:
        """Watch the listeners or not: while every buffered client is new, others stay queued."""
        if on == self._listening:
            return
        for listener in self.sockets:
            if on:
                self._selector.register(listener, selectors.EVENT_READ, listener)
            else:
                self._selector.unregister(listener)
        self._listening = on

    def _receive(self, pending: _Pending) -> None:
        try:
            data = pending.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # the client went away before its request was whole
            self._drop(pending)
            return
        pending.data += data

    def _serve(self, pending: _Pending) -> None:
        self._forget(pending)
        pending.sock.setblocking(True)
        # The sync worker's own request handling, reading the buffered bytes first; it closes
        # the connection when it is done.
        self.handle(pending.listener, _Prefetched(pending.sock, bytes(pending.data)), pending.addr)

    def _refuse(self, pending: _Pending) -> None:
        try:
            pending.sock.send(_TIMEOUT_ANSWER)
        except OSError:
            pass
        self._drop(pending)
        _count("408")

    def _drop(self, pending: _Pending) -> None:
        self._forget(pending)
        pending.sock.close()

    def _forget(self, pending: _Pending) -> None:
        if self._pending.pop(pending.sock.fileno(), None) is not None:
            self._selector.unregister(pending.sock)


def _count(status: str) -> None:
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


def _drain_pipe(fd: int) -> None:
    try:
        while os.read(fd, 512):
            pass
    except OSError:  # empty (EAGAIN): the wake-up was read
        pass
