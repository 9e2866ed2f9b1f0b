"""Structured logs: one JSON object a line, every `extra=` field kept, tokens scrubbed by construction."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter as _JsonFormatter

_TOKEN = re.compile(r"eyJ[\w-]*\.[\w-]+\.[\w-]*")
#: Fields every record of a run carries; a run's own log leaves them out (they name the run).
_RUN_FIELDS = frozenset({"run_id", "job", "slot", "attempt", "instance"})
_RESERVED = frozenset(RESERVED_ATTRS) | {"message", "asctime", "taskName"}


def redact(text: str) -> str:
    """Replace anything shaped like a JWT (a trigger token) with `[token]`."""
    return _TOKEN.sub("[token]", text) if "eyJ" in text else text


class JsonFormatter(_JsonFormatter):
    """Formats a record as one JSON line with its `extra=` fields; anything shaped like a JWT is replaced."""

    def __init__(self, instance: str | None = None) -> None:
        super().__init__("{message}", style="{", json_default=str, rename_fields={"exc_info": "exception"})
        self.instance = instance

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        """ts, level and logger first, then the message and every extra field; the instance last."""
        log_data["ts"] = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        log_data["level"] = record.levelname.lower()
        log_data["logger"] = record.name
        super().add_fields(log_data, record, message_dict)
        if self.instance and "instance" not in log_data:
            log_data["instance"] = self.instance

    def jsonify_log_record(self, log_data: Any) -> str:
        """The JSON line, with tokens scrubbed from every field."""
        return redact(super().jsonify_log_record(log_data))


class RunLogFormatter(logging.Formatter):
    """A batch's log records as text lines for its run log: level, logger, message, extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        """`INFO name: message {"extra": ...}`, then the traceback, if any, on its own lines."""
        extras = {
            key: value
            for key, value in record.__dict__.items()
            if key not in _RESERVED and key not in _RUN_FIELDS and not key.startswith("_")
        }
        line = f"{record.levelname} {record.name}: {record.getMessage()}"
        if extras:
            line += " " + json.dumps(extras, default=str, ensure_ascii=False)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line


class RunLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """`ctx.logger`: the run's fields on every record, merged with (not replaced by) the call's `extra=`."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        """Merge the run's fields under the call's own `extra=` fields."""
        kwargs["extra"] = {**(self.extra or {}), **(kwargs.get("extra") or {})}
        return msg, kwargs


def level_from_name(name: str | None) -> int:
    """A logging level from LOG_LEVEL's text (a name or a number); ValueError for an unknown name."""
    text = (name or "INFO").strip().upper()
    if text.isdigit():
        return int(text)
    value = logging.getLevelNamesMapping().get(text)
    if value is None:
        raise ValueError(f"unknown log level {name!r}")
    return value


def configure_batch_logging(level: int) -> None:
    """In a batch process: every logger's records go to stderr (the run's log) as text lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RunLogFormatter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    # The service's own loggers were set apart (JSON, no propagation) in the web worker.
    product = logging.getLogger("batch_trigger")
    for existing in list(product.handlers):
        product.removeHandler(existing)
    product.propagate = True
    product.setLevel(logging.NOTSET)


def configure_logging(level: int = logging.INFO, instance: str | None = None) -> None:
    """Send batch-trigger's logs and any other logger's (job modules') to stderr as JSON lines."""
    root = logging.getLogger()
    root.setLevel(level)
    json_handlers = [h for h in root.handlers if isinstance(h.formatter, JsonFormatter)]
    for handler in json_handlers:  # gunicorn's logconfig installed it without knowing the instance
        formatter = handler.formatter
        if isinstance(formatter, JsonFormatter) and formatter.instance is None:
            formatter.instance = instance
    if not json_handlers:
        root_handler = logging.StreamHandler(sys.stderr)
        root_handler.setFormatter(JsonFormatter(instance))
        root.addHandler(root_handler)
    logger = logging.getLogger("batch_trigger")
    logger.setLevel(level)
    if any(isinstance(h.formatter, JsonFormatter) for h in logger.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(instance))
    logger.addHandler(handler)
    logger.propagate = False
