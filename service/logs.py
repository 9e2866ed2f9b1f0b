"""Structured logs: one JSON object a line, run fields attached, tokens scrubbed by construction."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime

_TOKEN = re.compile(r"eyJ[\w-]*\.[\w-]+\.[\w-]*")
_RUN_FIELDS = ("run_id", "job", "slot", "attempt", "instance")


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line; anything shaped like a JWT is replaced."""

    def __init__(self, instance: str | None = None) -> None:
        super().__init__()
        self.instance = instance

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in _RUN_FIELDS:
            if hasattr(record, name):
                entry[name] = getattr(record, name)
        if self.instance and "instance" not in entry:
            entry["instance"] = self.instance
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return _TOKEN.sub("[token]", json.dumps(entry, default=str))


def configure_logging(level: int = logging.INFO, instance: str | None = None) -> None:
    """Send batch-trigger's logs to stderr as JSON lines, naming the instance (once per process)."""
    logger = logging.getLogger("batch_trigger")
    if any(isinstance(h.formatter, JsonFormatter) for h in logger.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(instance))
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
