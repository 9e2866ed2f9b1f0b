"""The `daily` job: summarises the previous local day's runs into an artefact."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from service.batches.artefacts import count_by_job, write_json
from service.jobs import JobContext, job
from service.ledger import FAILURES, Run
from service.slots import day_window, format_slot


def processed_day(logical: date) -> date:
    """The day a daily run processes: the one before its logical date."""
    return logical - timedelta(days=1)


def daily_report(day: date, zone: ZoneInfo, runs: list[Run]) -> dict[str, Any]:
    """The summary of one local day: its UTC window, runs per job and status, and failures."""
    start, end = day_window(day, zone)
    in_window = [r for r in runs if start <= r.created_at < end]
    return {
        "date": day.isoformat(),
        "timezone": zone.key,
        "window": {
            "start": format_slot(start),
            "end": format_slot(end),
            "hours": (end - start).total_seconds() / 3600,
        },
        "runs": len(in_window),
        "by_job": count_by_job(in_window),
        "failures": [
            {
                "id": r.id,
                "job": r.job,
                "slot": format_slot(r.slot),
                "status": r.status.value,
                "error": r.error,
            }
            for r in in_window
            if r.status in FAILURES
        ],
    }


def artefact_path(root: Path, day: date) -> Path:
    """Where the report of `day` is written."""
    return root / "daily" / f"{day.isoformat()}.json"


@job("daily", overlap="forbid", timeout=3600, retry_abandoned=True, schedule="0 0 * * *")
def daily(ctx: JobContext) -> None:
    """Summarise the previous day's runs (in BATCH_TIMEZONE) into artefacts/daily/DAY.json."""
    day = processed_day(ctx.logical_date)
    start, end = day_window(day, ctx.timezone)
    report = daily_report(day, ctx.timezone, ctx.ledger.runs_between(start, end))
    path = write_json(artefact_path(ctx.artefact_dir, day), report)
    ctx.logger.info("daily report for %s: %d runs -> %s", day, report["runs"], path)
