"""Graceful drain: on SIGTERM an instance refuses new claims while its listener is still open.

gunicorn's arbiter closes its listeners as soon as it handles SIGTERM, so the load balancer
would see refused connections without ever seeing `/readyz` fail. The arbiter hook installed
by `service.gunicorn_conf` first raises a marker that every worker sees (a file named after
the arbiter's pid), keeps serving 503 `draining` for `DRAIN_NOTICE_SECONDS`, and only then
lets gunicorn stop as usual.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def marker(arbiter_pid: int, run_dir: str | None = None) -> Path:
    """The drain marker of the gunicorn arbiter with that pid."""
    root = Path(run_dir or os.path.join(tempfile.gettempdir(), "batch-trigger"))
    return root / f"draining-{arbiter_pid}"


def worker_is_draining(run_dir: str | None = None) -> bool:
    """True in a gunicorn worker whose arbiter has begun to drain (a stat call, no I/O)."""
    return marker(os.getppid(), run_dir).exists()


def install(server: Any, notice_seconds: float, run_dir: str | None = None) -> None:
    """Make the arbiter drain on SIGTERM: raise the marker, wait out the notice, then stop."""
    path = marker(os.getpid(), run_dir)
    path.unlink(missing_ok=True)
    graceful_stop: Callable[[], None] = server.handle_term

    def handle_term() -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
        server.log.info("draining: refusing new claims for %.1f s before stopping", notice_seconds)
        time.sleep(notice_seconds)
        try:
            graceful_stop()
        finally:
            path.unlink(missing_ok=True)

    # The arbiter looks handlers up by name on the instance for every queued signal.
    server.handle_term = handle_term
