"""Slack's outbox: alerts wait in a bounded queue for one sender thread, so no caller waits on Slack.

A Slack that accepts connections and never answers holds each post for its whole timeout; a
caller that posted itself (the keeper's sweep, a web request) would stall with it. Here callers
only queue: one thread per process sends the messages in the order they were queued. The
queue is bounded, so a long Slack outage cannot grow memory without end; a message that finds
it full is logged as dropped (with its first line), never lost without a trace.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("batch_trigger.alerts")
#: Messages waiting for Slack beyond this many are dropped, each with an error log line.
CAPACITY = 100

Blocks = list[dict[str, Any]]
Deliver = Callable[[str, Blocks], bool]


class Outbox:
    """Messages sent in order by one daemon thread, started on first use in each process."""

    def __init__(self, deliver: Deliver, capacity: int = CAPACITY) -> None:
        self._deliver = deliver
        self.capacity = capacity
        self._lock = threading.Lock()
        self._pid = 0
        self._queue: queue.Queue[tuple[str, Blocks]] = queue.Queue(capacity)
        self._sending: str | None = None  # the message the sender waits on Slack for

    def put(self, text: str, blocks: Blocks) -> bool:
        """Queue a message; False, with an error log line naming it, when the queue is full."""
        pending = self._pending()
        try:
            pending.put_nowait((text, blocks))
        except queue.Full:
            log.error(
                "slack alert dropped: %d alerts already wait for Slack; not sent: %s",
                self.capacity,
                _first_line(text),
            )
            return False
        return True

    def flush(self, timeout: float) -> int:
        """Wait up to `timeout` seconds for the queue to empty; how many messages still wait."""
        end = time.monotonic() + timeout
        pending = self._pending()
        while pending.unfinished_tasks and time.monotonic() < end:
            time.sleep(0.05)
        return pending.unfinished_tasks

    def close(self, timeout: float) -> int:
        """Send what waits for up to `timeout` seconds, then log each message left unsent; their count."""
        left = self.flush(timeout)
        sending = self._sending
        if left and sending is not None:
            log.error("slack alert not confirmed (the process is stopping): %s", _first_line(sending))
        while True:
            try:
                text, _ = self._queue.get_nowait()
            except queue.Empty:
                break
            log.error(
                "slack alert not sent (the process is stopping): %s", text.splitlines()[0] if text else ""
            )
        return left

    def _pending(self) -> queue.Queue[tuple[str, Blocks]]:
        """This process's queue, its sender started; a forked child gets its own (the parent's
        thread did not survive the fork, and the parent still sends what it queued)."""
        with self._lock:
            if self._pid != os.getpid():
                if self._pid:
                    self._queue = queue.Queue(self.capacity)
                self._pid = os.getpid()
                threading.Thread(
                    target=self._send_forever, args=(self._queue,), name="slack-outbox", daemon=True
                ).start()
            return self._queue

    def _send_forever(self, pending: queue.Queue[tuple[str, Blocks]]) -> None:
        while True:
            text, blocks = pending.get()
            self._sending = text
            try:
                self._deliver(text, blocks)
            except Exception:  # a sender that died would leave every later alert queued forever
                log.exception("slack alert not delivered")
            finally:
                self._sending = None
                pending.task_done()


def _first_line(text: str) -> str:
    return text.splitlines()[0] if text else ""
