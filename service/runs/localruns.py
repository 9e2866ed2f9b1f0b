"""The batches this instance runs right now: one file per run under RUN_DIR, written by the launcher.

Each file holds the launcher's pid and the batch's (its process group). The drain (in the
gunicorn arbiter) reads them to wait for running batches and, past the grace period, to ask
the launcher to stop them and record the runs `interrupted`; a launcher that starts after
one died kills the batch groups the dead one left.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import suppress
from pathlib import Path


def directory(run_dir: str | None, instance: str) -> Path:
    """Where this instance's running-batch files live."""
    root = Path(run_dir or os.path.join(tempfile.gettempdir(), "batch-trigger"))
    return root / instance / "supervisors"


def register(run_dir: str | None, instance: str, run_id: str, batch_pid: int) -> None:
    """Announce that this process (the launcher) runs `run_id` as the batch `batch_pid`."""
    folder = directory(run_dir, instance)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / run_id).write_text(f"{os.getpid()} {batch_pid}")


def unregister(run_dir: str | None, instance: str, run_id: str) -> None:
    """The run's batch has ended."""
    (directory(run_dir, instance) / run_id).unlink(missing_ok=True)


def leftovers(run_dir: str | None, instance: str) -> dict[str, int]:
    """Run id → batch pid of every file a previous launcher left; the files are removed."""
    found = {}
    folder = directory(run_dir, instance)
    for path in folder.glob("*") if folder.is_dir() else []:
        with suppress(OSError, ValueError, IndexError):
            found[path.name] = int(path.read_text().split()[1])
        path.unlink(missing_ok=True)
    return found


def running(run_dir: str | None, instance: str) -> dict[str, int]:
    """Run id → launcher pid for every run whose launcher is still alive (signal it to stop them)."""
    found = {}
    folder = directory(run_dir, instance)
    for path in folder.glob("*") if folder.is_dir() else []:
        with suppress(OSError, ValueError):
            pid = int(path.read_text().split()[0])
            os.kill(pid, 0)
            found[path.name] = pid
            continue
        path.unlink(missing_ok=True)  # its launcher died without cleaning up
    return found
