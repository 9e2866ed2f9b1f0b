"""Outcomes not yet in the ledger, kept in a small local spool under RUN_DIR until it answers.

The launcher writes a batch's outcome here when the ledger does not take it at once, and deletes
it once the ledger has it; a launcher that starts (after a crash, or the instance's restart)
records what it finds here first, so a run that ended is never taken for one that was lost.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from service.ledger import Status
from service.slots import format_slot, parse_slot


@dataclass(frozen=True)
class Outcome:
    """How a batch ended, and when."""

    status: Status
    error: str | None = None
    finished_at: datetime | None = None
    #: A completion (the body ran to an end) as opposed to a run stopped because it was lost.
    completed: bool = True


class Spool:
    """One small JSON file per unrecorded outcome."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def put(self, run_id: str, outcome: Outcome) -> None:
        """Keep the outcome on disk (atomically: a crash leaves the old file or the new one)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        body = {
            "status": outcome.status.value,
            "error": outcome.error,
            "finished_at": format_slot(outcome.finished_at) if outcome.finished_at else None,
            "completed": outcome.completed,
        }
        temporary = self.directory / f".{run_id}.tmp"
        temporary.write_text(json.dumps(body))
        os.replace(temporary, self.directory / run_id)

    def remove(self, run_id: str) -> None:
        """Forget an outcome the ledger now has."""
        with contextlib.suppress(FileNotFoundError):
            (self.directory / run_id).unlink()

    def load(self) -> dict[str, Outcome]:
        """Every outcome in the spool, by run id; unreadable files are dropped."""
        found: dict[str, Outcome] = {}
        if not self.directory.is_dir():
            return found
        for path in self.directory.iterdir():
            if path.name.startswith("."):
                path.unlink(missing_ok=True)
                continue
            try:
                body = json.loads(path.read_text())
                finished = body.get("finished_at")
                found[path.name] = Outcome(
                    Status(body["status"]),
                    body.get("error"),
                    parse_slot(finished) if finished else None,
                    bool(body.get("completed", True)),
                )
            except (OSError, ValueError, KeyError, TypeError):
                path.unlink(missing_ok=True)
        return found
