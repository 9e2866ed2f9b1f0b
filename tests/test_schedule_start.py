"""A schedule EventBridge Scheduler would refuse or read another way stops the service at start: one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.live import REPO
from tests.support.startup import refused_at_start

JOBS = {
    # pasted from the template: six bare fields, which croniter read with a seconds field
    "pasted": ('schedule="0 0 * * ? *"', "UTC", "job 'pasted': schedule '0 0 * * ? *': six bare fields"),
    "both-days": ('schedule="cron(0 0 1 * MON *)"', "UTC", "exactly one of day-of-month and day-of-week"),
    "either-day": ('schedule="0 0 1 * 1"', "UTC", "both restricted"),
    # valid in UTC, where the decorator reads it; in BATCH_TIMEZONE it falls in the spring-forward gap
    "in-the-gap": ('schedule="at(2026-03-08T02:30:00)"', "America/New_York", "does not exist in America/"),
}


@pytest.mark.parametrize("name", sorted(JOBS))
def test_it_refuses_to_start_on_a_schedule_aws_would_read_another_way(tmp_path: Path, name: str) -> None:
    declaration, zone, expected = JOBS[name]
    (tmp_path / "bad_jobs.py").write_text(
        f"from service import job\n\n@job({name!r}, {declaration})\ndef run(ctx):\n    pass\n"
    )
    line = refused_at_start(
        tmp_path, PYTHONPATH=f"{REPO}:{tmp_path}", BATCH_MODULES="bad_jobs", BATCH_TIMEZONE=zone
    )
    assert expected in line
