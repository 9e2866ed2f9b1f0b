"""The batches this instance supervises right now: one pid file per supervisor under RUN_DIR.

The drain (in the gunicorn arbiter) reads them to wait for running batches and, past the
grace period, to ask their supervisors to stop and record the run `interrupted`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path


def directory(run_dir: str | None, instance: str) -> Path:
    """Where this instance's supervisor pid files live."""
    root = Path(run_dir or os.path.join(tempfile.gettempdir(), "batch-trigger"))
    return root / instance / "supervisors"


@contextmanager
def registered(run_dir: str | None, instance: str, run_id: str) -> Iterator[None]:
    """Announce the calling process as the supervisor of `run_id` while the block runs."""
    folder = directory(run_dir, instance)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / run_id
    path.write_text(str(os.getpid()))
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


def running(run_dir: str | None, instance: str) -> dict[str, int]:
    """Run id → supervisor pid for every supervisor of this instance that is still alive."""
    found = {}
    folder = directory(run_dir, instance)
    for path in folder.glob("*") if folder.is_dir() else []:
        with suppress(OSError, ValueError):
            pid = int(path.read_text())
            os.kill(pid, 0)
            found[path.name] = pid
            continue
        path.unlink(missing_ok=True)  # its supervisor died without cleaning up
    return found
