"""A batch's output, captured where its file descriptors 1 and 2 point: timestamped, redacted,
bounded, and written to the run's log in the ledger while the run goes.

The supervising process owns the pipes, so output written by subprocesses or just before an
`os._exit` is kept, and what was sent before the instance died stays in the ledger.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import sys
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from service.errors import LedgerUnavailable
from service.logs import redact
from service.runs.logbound import LogBound, LogSink
from service.runs.waiting import readable

if TYPE_CHECKING:
    from service.ledger import Ledger

READ_SIZE = 64 * 1024
#: What one pump reads from a stream at most: a chatty batch is drained in few loop turns.
PUMP_LIMIT = 1024 * 1024
#: The pipes' kernel buffer (Linux F_SETPIPE_SZ): a batch writes on while its supervisor is busy.
PIPE_SIZE = 1024 * 1024
#: A line longer than this (or a partial line older than a flush) is stored in pieces.
LINE_LIMIT = 16 * 1024
FLUSH_SECONDS = 1.0
FLUSH_BYTES = 64 * 1024
TRACEBACK = "Traceback (most recent call last):"
_PREFIX = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (?:stdout|stderr) ")
#: Lines kept in memory for the alert's excerpt.
RECENT_LINES = 200


@dataclass
class Pipes:
    """The two pipes a batch's stdout and stderr are redirected into."""

    out_read: int
    out_write: int
    err_read: int
    err_write: int

    @classmethod
    def open(cls) -> Pipes:
        """Create both pipes; flush this process's buffers first so a fork does not copy them."""
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        out_read, out_write = os.pipe()
        err_read, err_write = os.pipe()
        for fd in (out_write, err_write):
            # Best effort: the default 64 KiB makes a chatty batch wait for every read of its
            # supervisor; above /proc/sys/fs/pipe-max-size (or off Linux) the default stays.
            with contextlib.suppress(OSError, AttributeError):
                fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        return cls(out_read, out_write, err_read, err_write)

    def redirect_here(self) -> None:
        """In the batch process: make fds 1 and 2 the pipes (subprocesses inherit them)."""
        os.dup2(self.out_write, 1)
        os.dup2(self.err_write, 2)
        for fd in (self.out_read, self.out_write, self.err_read, self.err_write):
            os.close(fd)
        # Line buffering: a line printed just before os._exit is in the pipe, not lost in a buffer.
        for stream in (sys.stdout, sys.stderr):
            reconfigure = getattr(stream, "reconfigure", None)
            if reconfigure is not None:
                reconfigure(line_buffering=True)

    def keep_read_ends(self) -> dict[str, int]:
        """In the supervisor: close the write ends (so EOF comes when the batch's side closes)."""
        os.close(self.out_write)
        os.close(self.err_write)
        for fd in (self.out_read, self.err_read):
            os.set_blocking(fd, False)
        return {"stdout": self.out_read, "stderr": self.err_read}


class OutputCapture:
    """Reads a batch's streams, formats `<time> <stream> <line>`, and ships batches to the ledger."""

    def __init__(self, run_id: str, sink: LogSink, streams: dict[str, int], bound: LogBound | None = None):
        self.run_id = run_id
        self._sink = sink
        self._open = dict(streams)
        self._partial: dict[str, bytes] = dict.fromkeys(streams, b"")
        self._partial_since: dict[str, float] = {}
        self._bound = bound or LogBound()
        self._recent: deque[tuple[str, str]] = deque(maxlen=RECENT_LINES)
        self._next_flush = time.monotonic() + FLUSH_SECONDS
        self._stop_at: float | None = None

    def finish(self, timeout: float = 2.0) -> None:
        """Read what is left (up to `timeout` seconds), store it, and close the pipes."""
        self._stop_at = time.monotonic() + timeout
        self._loop()

    def fds(self) -> list[int]:
        """The read ends still open (for a caller that selects on many batches in one loop)."""
        return list(self._open.values())

    def pump(self, timeout: float) -> bool:
        """Read whatever is ready within `timeout`; flush when due. False once every stream closed."""
        if not self._open:
            return False
        ready = readable(list(self._open.values()), timeout)
        for name, fd in list(self._open.items()):
            if fd in ready:
                for _ in range(PUMP_LIMIT // READ_SIZE):
                    if self._read(name, fd) < READ_SIZE:
                        break  # the pipe is empty (or closed) for now
        if self._bound.unsent_bytes >= FLUSH_BYTES or time.monotonic() >= self._next_flush:
            self.flush()
        return bool(self._open)

    def flush(self) -> None:
        """Send the lines not yet in the ledger; on an outage keep them for the next try."""
        now = time.monotonic()
        self._next_flush = now + FLUSH_SECONDS
        for name, pending in self._partial.items():
            # A line without its end for a whole interval (a prompt, a progress bar): store it now.
            if pending and now - self._partial_since.get(name, now) >= FLUSH_SECONDS:
                self._partial[name] = b""
                self._add(name, pending + b"\n", datetime.now(UTC))
        with contextlib.suppress(LedgerUnavailable):
            self._bound.send(self.run_id, self._sink)

    def excerpt(self, max_lines: int = 20) -> str:
        """The last traceback written to stderr, else the last lines of output (for alerts)."""
        lines = list(self._recent)
        starts = [i for i, (stream, text) in enumerate(lines) if stream == "stderr" and TRACEBACK in text]
        if starts:
            lines = [entry for entry in lines[starts[-1] :] if entry[0] == "stderr"]
        return "\n".join(text for _, text in lines[-max_lines:])

    def _loop(self) -> None:
        while True:
            stop_at = self._stop_at
            if stop_at is not None and time.monotonic() >= stop_at:
                break
            wait = self._next_flush - time.monotonic()
            if stop_at is not None:
                wait = min(wait, stop_at - time.monotonic())
            if not self.pump(max(0.0, min(wait, FLUSH_SECONDS))):
                break
        self._close()
        self.flush()

    def _read(self, name: str, fd: int) -> int:
        """Read once from a stream; how many bytes came (0: none now, or the stream closed)."""
        try:
            data = os.read(fd, READ_SIZE)
        except BlockingIOError:
            return 0
        except OSError:
            data = b""
        if not data:
            self._open.pop(name)
            os.close(fd)
            data, self._partial[name] = self._partial[name], b""
            if data:
                self._add(name, data + b"\n", datetime.now(UTC))
            return 0
        size = len(data)
        data = self._partial[name] + data
        end = data.rfind(b"\n") + 1
        if end == 0 and len(data) < LINE_LIMIT:
            self._keep_partial(name, data)
            return size
        if end == 0:
            end = len(data)
        self._keep_partial(name, data[end:])
        self._add(name, data[:end], datetime.now(UTC))
        return size

    def _keep_partial(self, name: str, data: bytes) -> None:
        if data and not self._partial[name]:
            self._partial_since[name] = time.monotonic()
        self._partial[name] = data

    def _add(self, stream: str, data: bytes, when: datetime) -> None:
        # One timestamp per read: the lines of one read arrived together.
        prefix = f"{when.strftime('%Y-%m-%dT%H:%M:%S.')}{when.microsecond // 1000:03d}Z {stream} "
        text = redact(data.decode("utf-8", "replace"))
        lines = text.splitlines()
        self._recent.extend((stream, line) for line in lines[-RECENT_LINES:])
        self._bound.add("".join(f"{prefix}{line}\n" for line in lines).encode())

    def _close(self) -> None:
        for name, fd in list(self._open.items()):
            self._open.pop(name)
            data, self._partial[name] = self._partial[name], b""
            if data:
                self._add(name, data + b"\n", datetime.now(UTC))
            with contextlib.suppress(OSError):
                os.close(fd)


def stored_excerpt(ledger: Ledger, run_id: str, max_lines: int = 20) -> str:
    """The last lines of a run's stored log, without their time and stream: what a lost run had
    sent before its instance died, for the alert that reports it."""
    try:
        lines = ledger.read_log(run_id).text.decode("utf-8", "replace").splitlines()[-max_lines:]
    except LedgerUnavailable:
        return ""  # the alert goes out without it
    return "\n".join(_PREFIX.sub("", line, count=1) for line in lines)
