"""Scheduled jobs for the schedule tests: they record each execution and finish at once."""

from __future__ import annotations

import os
from pathlib import Path

from service import JobContext, job


def _record(ctx: JobContext) -> None:
    with open(Path(os.environ["TEST_COUNTER_DIR"]) / ctx.job, "a", encoding="utf-8") as out:
        out.write(f"{ctx.run_id} {ctx.slot.isoformat()} attempt={ctx.attempt}\n")


@job("nightly", overlap="allow", schedule="30 1 * * *", schedule_timezone="America/New_York")
def nightly(ctx: JobContext) -> None:
    """01:30 New York: a time the fall-back repeats."""
    _record(ctx)


@job("hourly", overlap="allow", schedule="cron(0 * * * ? *)")
def hourly(ctx: JobContext) -> None:
    """Every hour, in BATCH_TIMEZONE."""
    _record(ctx)


@job("adhoc", overlap="allow")
def adhoc(ctx: JobContext) -> None:
    """No schedule: triggered by hand or backfilled with --every or --slot."""
    _record(ctx)
