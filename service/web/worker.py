"""gunicorn's sync worker, made to receive each request whole before it serves it (slow clients).

gunicorn's `sync` worker reads a request while it blocks on it: a client that sends its headers
one byte a second holds a worker until gunicorn's `timeout` kills it, and two such clients starve
a small instance (`/healthz` goes unanswered). This worker accepts connections and buffers what
they send, many at once, in one poll loop; only a request that arrived whole (its head, and the
body its Content-Length announces or a chunked body's last chunk) is handed to the sync worker's
own handling. A client that sends `Expect: 100-continue` is answered "100 Continue" from the
loop, then buffered alike. A client that has not sent its request within REQUEST_READ_SECONDS
is answered `408` and closed; one whose head has not ended within 64 KiB `431`, a chunked body
over 1 MiB `413`, broken chunk framing `400`. What the sync worker still reads of a
Content-Length body too large to buffer must arrive within the same deadline.
gunicorn's own refusals of requests it cannot parse (400, 414, 431) are answered in the
contract's JSON too.

After its answer, a connection is closed as RFC 9112 section 9.6 asks (the write side first, then
what the client still sends is read until it closes), as gunicorn does; but where gunicorn's
sync worker waits up to 2 s for that client to close, here the poll loop drains and closes it
beside the next requests. A client that reads its answer and keeps the connection open costs a
socket for LINGER_SECONDS, not a worker.

Requests are still served one at a time, in the worker's only thread, as the sync worker does:
a thread per slow client (gthread) would only raise the number of clients it takes to starve a
worker, while a buffered client costs a socket and its bytes.
"""

from __future__ import annotations

import errno
import os
import selectors
import socket
import time
from typing import Any

from gunicorn.workers.sync import SyncWorker  # type: ignore[import-untyped]

from service.errors import ConfigError
from service.ledger.budget import let_go_where_wanted
from service.web.connections import (
    CONTINUE,
    MAX_BUFFERED_BODY,
    MAX_BUFFERED_HEAD,
    JsonErrorPage,
    Lingering,
    Pending,
    Prefetched,
    Stage,
    count_unparsed,
    json_answer,
    receive,
)

READ_ENV = "REQUEST_READ_SECONDS"
DEFAULT_READ_SECONDS = 10.0
#: Connections one worker buffers at once (fds are finite). Past it, the oldest is answered 408
#: if it has been sending for SLOW_AFTER seconds; while every one is newer, new connections wait
#: in the kernel's backlog (a burst of whole requests is served, never refused).
MAX_PENDING = 256
SLOW_AFTER = 1.0
#: Connections one worker accepts per wake-up (the listener stays readable while more wait).
ACCEPT_BATCH = 16
#: After an answer, what the client still sends is read (and dropped) for this long, up to
#: LINGER_BYTES, before the connection closes: gunicorn's own figures. Past MAX_LINGERING such
#: connections, the oldest closes at once.
LINGER_SECONDS = 2.0
LINGER_BYTES = 64 * 1024
MAX_LINGERING = 256
#: The worker's own refusals.
_TIMEOUT = json_answer(
    "HTTP/1.1 408 Request Timeout", "request_timeout", "the request did not arrive in time"
)
_REFUSALS = {
    Stage.HEAD_TOO_LARGE: json_answer(
        "HTTP/1.1 431 Request Header Fields Too Large",
        "request_header_fields_too_large",
        f"the request's head did not end within {MAX_BUFFERED_HEAD // 1024} KiB",
    ),
    Stage.BODY_TOO_LARGE: json_answer(
        "HTTP/1.1 413 Content Too Large",
        "too_large",
        f"a chunked body over {MAX_BUFFERED_BODY // 1024} KiB is not taken (send a Content-Length)",
    ),
    Stage.BROKEN: json_answer(
        "HTTP/1.1 400 Bad Request", "malformed", "the body's chunked framing is broken"
    ),
}


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


class BufferingSyncWorker(SyncWorker):  # type: ignore[misc]  # gunicorn ships no type hints
    """A sync worker that serves only requests that arrived whole; slow clients cost it a buffer."""

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        """gunicorn's own answer to a request it cannot parse (400, 414, 431, ...), as contract JSON."""
        super().handle_error(req, JsonErrorPage(client), addr, exc)

    def run(self) -> None:
        """Poll the listeners and the pending connections; serve each whole request in turn."""
        if self.cfg.is_ssl:  # TLS records are not requests: buffer nothing, as the sync worker does
            self.log.warning(
                "gunicorn serves TLS itself: slow clients are not buffered and can hold this worker;"
                " terminate TLS at the load balancer or a proxy instead"
            )
            super().run()
            return
        self._read_seconds = read_seconds()
        self._pending: dict[int, Pending] = {}
        self._lingering: dict[int, Lingering] = {}
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
            for lingering in list(self._lingering.values()):
                self._close(lingering)
            self._selector.close()

    def _poll(self) -> None:
        now = time.monotonic()
        self._listen(self._room(now))
        deadlines = [p.deadline for p in self._pending.values()]
        deadlines += [lingering.deadline for lingering in self._lingering.values()]
        wait = min([1.0, *(deadline - now for deadline in deadlines)])
        listeners = []
        for key, _ in self._selector.select(max(0.0, wait)):
            if key.data is None:
                _drain_pipe(self.PIPE[0])
            elif isinstance(key.data, Pending):
                self._receive(key.data)
            elif isinstance(key.data, Lingering):
                self._drain(key.data)
            else:
                listeners.append(key.data)
        # New connections after what the buffered ones sent: `_room` then judges them up to date.
        for listener in listeners:
            self._accept(listener)
        for pending in list(self._pending.values()):
            stage = pending.stage()
            if stage == Stage.WHOLE:
                self._serve(pending)
                if not self.alive:
                    return
            elif stage != Stage.ARRIVING:
                self._refuse(pending, _REFUSALS[stage])
            elif pending.wants_continue():
                self._continue(pending)
        now = time.monotonic()
        for pending in [p for p in self._pending.values() if p.deadline <= now]:
            self._refuse(pending, _TIMEOUT)
        for lingering in [c for c in self._lingering.values() if c.deadline <= now]:
            self._close(lingering)

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
                self._refuse(self._oldest(), _TIMEOUT)  # a slow client makes room
            pending = Pending(sock, addr, listener, time.monotonic() + self._read_seconds)
            self._pending[sock.fileno()] = pending
            self._selector.register(sock, selectors.EVENT_READ, pending)

    def _room(self, now: float) -> bool:
        """Whether to take more connections: fewer than MAX_PENDING are buffered, or the oldest has
        been sending for SLOW_AFTER seconds (a slow client, which makes room for a new one)."""
        if len(self._pending) < MAX_PENDING:
            return True
        return now - (self._oldest().deadline - self._read_seconds) >= SLOW_AFTER

    def _oldest(self) -> Pending:
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

    def _receive(self, pending: Pending) -> None:
        data = receive(pending.sock)
        if data is None:
            return
        if not data:  # the client went away before its request was whole
            self._drop(pending)
            return
        pending.data += data

    def _serve(self, pending: Pending) -> None:
        self._forget(pending)
        # The sync worker's own request handling, reading the buffered bytes first (what it reads
        # beyond them must arrive within the request's deadline); it closes the connection when
        # it is done. Its answer must be taken within REQUEST_READ_SECONDS too.
        client = Prefetched(pending, self._linger, self._read_seconds)
        self.handle(pending.listener, client, pending.addr)

    def _linger(self, sock: socket.socket) -> None:
        """Read what the answered client still sends until it closes, in the poll loop."""
        if sock.fileno() < 0 or sock.fileno() in self._lingering:
            return
        if len(self._lingering) >= MAX_LINGERING:
            self._close(min(self._lingering.values(), key=lambda c: c.deadline))
        lingering = Lingering(sock, time.monotonic() + LINGER_SECONDS)
        try:
            sock.setblocking(False)
            self._selector.register(sock, selectors.EVENT_READ, lingering)
        except (OSError, ValueError):
            sock.close()
            return
        self._lingering[sock.fileno()] = lingering

    def _drain(self, lingering: Lingering) -> None:
        data = receive(lingering.sock)
        if data is None:
            return
        lingering.drained += len(data)
        if not data or lingering.drained >= LINGER_BYTES:
            self._close(lingering)

    def _close(self, lingering: Lingering) -> None:
        if self._lingering.pop(lingering.sock.fileno(), None) is not None:
            self._selector.unregister(lingering.sock)
        lingering.sock.close()

    def _continue(self, pending: Pending) -> None:
        """Ask for the body the client holds back until "100 Continue" (it is buffered as it comes)."""
        try:
            pending.sock.send(CONTINUE)
        except OSError:
            self._drop(pending)
            return
        pending.continued = True

    def _refuse(self, pending: Pending, answer: bytes) -> None:
        """Answer a request the worker will not serve, and close as after any answer (what the
        client still sends is drained, so that its unread bytes do not reset the answer away)."""
        self._forget(pending)
        count_unparsed(answer.split(b" ", 2)[1].decode())
        try:
            pending.sock.send(answer)
            pending.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pending.sock.close()
            return
        self._linger(pending.sock)

    def _drop(self, pending: Pending) -> None:
        self._forget(pending)
        pending.sock.close()

    def _forget(self, pending: Pending) -> None:
        if self._pending.pop(pending.sock.fileno(), None) is not None:
            self._selector.unregister(pending.sock)


def _drain_pipe(fd: int) -> None:
    try:
        while os.read(fd, 512):
            pass
    except OSError:  # empty (EAGAIN): the wake-up was read
        pass
