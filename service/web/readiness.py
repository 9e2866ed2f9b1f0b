"""Readiness for the load balancer: the ledger must take a write, not merely answer.

`SELECT 1` still answers when SQLite's disk is full or PostgreSQL is read-only (a failover's
old primary), while every claim fails with 503: the load balancer would keep sending traffic to
an instance that can take none. So /readyz writes (one upsert of this instance's probe row),
and at most once every PROBE_EVERY_SECONDS per process: between probes it repeats the last
answer, so health checks, however frequent, cost the ledger little.
"""

from __future__ import annotations

import threading
import time

from flask import Flask

from service.errors import ServiceError
from service.ledger import Ledger

PROBE_EVERY_SECONDS = 5.0
_EXTENSION_KEY = "batch_trigger.write_probe"


class WriteProbe:
    """The last write probe of this process, repeated only once it is `every` seconds old."""

    def __init__(self, ledger: Ledger, instance: str, every: float = PROBE_EVERY_SECONDS) -> None:
        self._ledger = ledger
        self._instance = instance
        self.every = every
        self._lock = threading.Lock()
        self._probed_at: float | None = None
        self._error: str | None = None

    def error(self) -> str | None:
        """None when the ledger took this process's latest probe write; else why it did not."""
        if self._fresh():
            return self._error
        # One thread probes; others answer with the last result meanwhile (the first one waits:
        # there is none yet), so a slow or unreachable ledger never holds up every check.
        if not self._lock.acquire(blocking=self._probed_at is None):
            return self._error
        try:
            if not self._fresh():
                try:
                    self._ledger.probe_write(self._instance)
                    self._error = None
                except ServiceError as exc:
                    self._error = exc.message
                self._probed_at = time.monotonic()
            return self._error
        finally:
            self._lock.release()

    def _fresh(self) -> bool:
        return self._probed_at is not None and time.monotonic() - self._probed_at < self.every


def write_probe(app: Flask, ledger: Ledger, instance: str) -> WriteProbe:
    """The app's write probe in this process, made on first use."""
    probe: WriteProbe = app.extensions.setdefault(_EXTENSION_KEY, WriteProbe(ledger, instance))
    return probe
