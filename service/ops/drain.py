"""Graceful drain: on SIGTERM an instance refuses new claims while its listener is still open.

gunicorn's arbiter closes its listeners as soon as it handles SIGTERM, so the load balancer
would see refused connections without ever seeing `/readyz` fail. The arbiter hook installed
by `service.gunicorn_conf` first raises a marker that every worker sees (a file named after
the arbiter's pid) so claims answer 503 `draining`; it keeps the listener open for
`DRAIN_NOTICE_SECONDS`, lets running batches finish for up to `DRAIN_GRACE_SECONDS`, asks the
launcher to stop those still running (it records them `interrupted`; a live instance's
keeper runs them again), and only then lets gunicorn stop as usual.
"""

from __future__ import annotations

import os
import signal
import tempfile
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

from service.config import Settings
from service.runs import localruns


def marker(arbiter_pid: int, run_dir: str | None = None) -> Path:
    """The drain marker of the gunicorn arbiter with that pid."""
    root = Path(run_dir or os.path.join(tempfile.gettempdir(), "batch-trigger"))
    return root / f"draining-{arbiter_pid}"


#: Set by `service.gunicorn_conf` in the arbiter, inherited by its workers: whose marker to watch.
ARBITER_ENV = "BATCH_TRIGGER_ARBITER_PID"


def arbiter_pid() -> int | None:
    """The pid of the gunicorn arbiter this process serves under (None outside our gunicorn config)."""
    value = os.environ.get(ARBITER_ENV, "")
    return int(value) if value.isdigit() else None


def raise_marker(arbiter_pid: int, run_dir: str | None = None) -> None:
    """Tell every worker of that arbiter to refuse new claims."""
    path = marker(arbiter_pid, run_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()


def worker_is_draining(run_dir: str | None = None) -> bool:
    """True in a gunicorn worker whose arbiter has begun to drain (a stat call, no I/O)."""
    arbiter = arbiter_pid()
    return arbiter is not None and marker(arbiter, run_dir).exists()


def install(server: Any, settings: Settings) -> None:
    """Make the arbiter drain on SIGTERM, then stop gracefully."""
    path = marker(os.getpid(), settings.run_dir)
    path.unlink(missing_ok=True)
    graceful_stop: Callable[[], None] = server.handle_term

    def handle_term() -> None:
        raise_marker(os.getpid(), settings.run_dir)
        server.log.info(
            "draining: new claims answer 503; running batches get %s s", settings.drain_grace_seconds
        )
        try:
            wait_for_batches(settings)
            graceful_stop()
        finally:
            path.unlink(missing_ok=True)

    # The arbiter looks handlers up by name on the instance for every queued signal.
    server.handle_term = handle_term


def wait_for_batches(settings: Settings) -> None:
    """Keep the notice period; let batches finish within the grace; interrupt the rest."""
    began = time.monotonic()
    while True:
        elapsed = time.monotonic() - began
        running = localruns.running(settings.run_dir, settings.instance_id)
        if elapsed >= settings.drain_notice_seconds and (
            not running or elapsed >= settings.drain_grace_seconds
        ):
            break
        time.sleep(0.2)
    for pid in running.values():
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    end = time.monotonic() + settings.kill_grace_seconds + 10
    while running and time.monotonic() < end:
        time.sleep(0.2)
        running = localruns.running(settings.run_dir, settings.instance_id)
