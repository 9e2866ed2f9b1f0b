"""Artefacts that batches write: JSON files replaced atomically, so a re-run is idempotent."""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from service.ledger import Run


def write_json(path: Path, data: dict[str, Any]) -> Path:
    """Write `data` to `path` atomically: readers see the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(data, out, indent=2, sort_keys=True, default=str)
            out.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def count_by_job(runs: Iterable[Run]) -> dict[str, dict[str, int]]:
    """Runs counted per job and final status: `{"daily": {"succeeded": 3, ...}}`."""
    counts: dict[str, Counter[str]] = {}
    for run in runs:
        counts.setdefault(run.job, Counter())[run.status.value] += 1
    return {job: dict(sorted(c.items())) for job, c in sorted(counts.items())}
