"""The bound on a run's stored log: the first half of LOG_LIMIT and the newest other half.

Offsets count bytes of the whole output as it was produced, so a reader continues with the
offset it was given, and the bytes dropped between the head and the tail read as one gap
("… N bytes omitted …"). Chunks always hold whole lines, so each decodes on its own.
"""

from __future__ import annotations

from collections import deque
from typing import Protocol

LOG_LIMIT = 1024 * 1024
#: The largest row a send writes (a burst after a ledger outage is split into several).
CHUNK_LIMIT = 256 * 1024


class LogSink(Protocol):
    """Where the log goes: the ledger's run-log hooks."""

    def append_log(self, run_id: str, offset: int, chunk: bytes) -> None: ...

    def drop_log(self, run_id: str, start: int, end: int) -> None: ...


class LogBound:
    """Lines in, chunks out: keeps the head, rolls the tail, remembers what the ledger holds."""

    def __init__(self, limit: int = LOG_LIMIT) -> None:
        self.head_limit = limit // 2
        self.tail_limit = limit - self.head_limit
        self.offset = 0
        self.head_end: int | None = None
        # (offset, bytes, in_head) not yet in the ledger, and (offset, size) of stored tail chunks.
        self._unsent: deque[tuple[int, bytes, bool]] = deque()
        self._stored_tail: deque[tuple[int, int]] = deque()
        self._stored_tail_bytes = 0
        self.unsent_bytes = 0

    @property
    def unsent_tail_bytes(self) -> int:
        """Bytes of the tail waiting to be sent."""
        return sum(len(data) for _, data, head in self._unsent if not head)

    def add(self, block: bytes) -> None:
        """Take a block of whole lines (each ending in a newline)."""
        if self.head_end is None:
            room = self.head_limit - self.offset
            if len(block) <= room:
                self._queue(block, True)
                return
            cut = block.rfind(b"\n", 0, room) + 1
            if cut:
                self._queue(block[:cut], True)
            self.head_end = self.offset
            block = block[cut:]
        if block:
            self._queue(block, False)
        # While the ledger cannot take it, the tail waits in memory: no more than it may keep.
        while self.unsent_tail_bytes > self.tail_limit:
            index = next(i for i, (_, _, head) in enumerate(self._unsent) if not head)
            _, data, _ = self._unsent[index]
            del self._unsent[index]
            self.unsent_bytes -= len(data)

    def send(self, run_id: str, sink: LogSink) -> None:
        """Write the unsent chunks, then drop the oldest tail chunks beyond the bound."""
        while self._unsent:
            offset, data, head = self._unsent[0]
            count = 1
            # Merge contiguous pieces of one section into one row.
            while count < len(self._unsent):
                next_offset, next_data, next_head = self._unsent[count]
                if next_head != head or next_offset != offset + len(data):
                    break
                if len(data) + len(next_data) > CHUNK_LIMIT:
                    break
                data += next_data
                count += 1
            sink.append_log(run_id, offset, data)
            for _ in range(count):
                self._unsent.popleft()
            self.unsent_bytes -= len(data)
            if not head:
                self._stored_tail.append((offset, len(data)))
                self._stored_tail_bytes += len(data)
        excess, count, end = self._stored_tail_bytes - self.tail_limit, 0, 0
        while excess > 0:
            offset, size = self._stored_tail[count]
            excess, count, end = excess - size, count + 1, offset + size
        if count:
            sink.drop_log(run_id, self._stored_tail[0][0], end)
            for _ in range(count):
                self._stored_tail_bytes -= self._stored_tail.popleft()[1]

    def _queue(self, data: bytes, head: bool) -> None:
        self._unsent.append((self.offset, data, head))
        self.offset += len(data)
        self.unsent_bytes += len(data)
