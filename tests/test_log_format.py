"""Log lines keep what callers put in them: every `extra=` field as JSON, tokens scrubbed, and
LOG_LEVEL read once at start (a bad value refused in one line)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from service.config import Settings
from service.errors import ConfigError
from service.logs import JsonFormatter, RunLogFormatter, RunLogger

TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJkYWlseSJ9.c2lnbmF0dXJl"


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger writing through the service's JSON formatter into a buffer."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("i-1"))
    logger = logging.getLogger("tests.log_format")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)


def test_it_keeps_every_extra_field_and_scrubs_tokens_in_them(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured
    logger.info(
        "loaded %d rows", 3, extra={"customer": {"id": 42}, "source": "s3", "auth": f"Bearer {TOKEN}"}
    )
    entry = json.loads(stream.getvalue())
    assert (
        entry["message"] == "loaded 3 rows"
        and entry["level"] == "info"
        and entry["logger"] == "tests.log_format"
    )
    assert entry["customer"] == {"id": 42} and entry["source"] == "s3" and entry["instance"] == "i-1"
    assert entry["auth"] == "Bearer [token]" and "eyJ" not in stream.getvalue()


def test_it_merges_the_runs_fields_with_the_calls_extra(captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = captured
    RunLogger(logger, {"run_id": "r-1", "job": "daily"}).warning("slow", extra={"seconds": 12.5})
    entry = json.loads(stream.getvalue())
    assert entry["run_id"] == "r-1" and entry["job"] == "daily" and entry["seconds"] == 12.5


def test_it_writes_a_batchs_records_as_text_with_their_extras() -> None:
    record = logging.LogRecord("jobs.import", logging.WARNING, __file__, 1, "skipped %s", ("row 7",), None)
    record.run_id, record.reason = "r-1", "no customer id"
    assert (
        RunLogFormatter().format(record) == 'WARNING jobs.import: skipped row 7 {"reason": "no customer id"}'
    )


@pytest.mark.parametrize(
    ("value", "level"), [(None, logging.INFO), ("debug", logging.DEBUG), ("WARNING", 30), ("15", 15)]
)
def test_it_reads_log_level_by_name_or_number(value: str | None, level: int) -> None:
    env = {"TRIGGER_SECRET": "x" * 32} | ({"LOG_LEVEL": value} if value is not None else {})
    assert Settings.from_env(env).log_level == level


def test_it_refuses_an_unknown_log_level_in_one_line() -> None:
    with pytest.raises(ConfigError, match="LOG_LEVEL 'loud' is not a level"):
        Settings.from_env({"TRIGGER_SECRET": "x" * 32, "LOG_LEVEL": "loud"})
