"""The `monthly` job: rolls up the previous local month's runs into an artefact."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from service.batches.artefacts import count_by_job, write_json
from service.jobs import JobContext, job
from service.ledger import FAILURES, Run
from service.slots import day_window, format_slot


def processed_month(logical: date) -> tuple[date, date]:
    """The month a monthly run processes, as [first day, first day of the next month)."""
    first_of_this = logical.replace(day=1)
    first_of_previous = (first_of_this - timedelta(days=1)).replace(day=1)
    return first_of_previous, first_of_this


def monthly_report(first: date, next_first: date, zone: ZoneInfo, runs: list[Run]) -> dict[str, Any]:
    """The roll-up of one local month: its days, runs per job and status, failure count."""
    start, end = day_window(first, zone)[0], day_window(next_first, zone)[0]
    in_window = [r for r in runs if start <= r.created_at < end]
    return {
        "month": first.strftime("%Y-%m"),
        "timezone": zone.key,
        "days": (next_first - first).days,
        "window": {"start": format_slot(start), "end": format_slot(end)},
        "runs": len(in_window),
        "by_job": count_by_job(in_window),
        "failures": sum(1 for r in in_window if r.status in FAILURES),
    }


def artefact_path(root: Path, first: date) -> Path:
    """Where the roll-up of the month starting `first` is written."""
    return root / "monthly" / f"{first.strftime('%Y-%m')}.json"


@job("monthly", overlap="forbid", timeout=3 * 3600, retry_abandoned=True, schedule="0 0 1 * *")
def monthly(ctx: JobContext) -> None:
    """Roll up the previous month's runs (in BATCH_TIMEZONE) into artefacts/monthly/YYYY-MM.json."""
    first, next_first = processed_month(ctx.logical_date)
    start, end = day_window(first, ctx.timezone)[0], day_window(next_first, ctx.timezone)[0]
    report = monthly_report(first, next_first, ctx.timezone, ctx.ledger.runs_between(start, end))
    path = write_json(artefact_path(ctx.artefact_dir, first), report)
    ctx.logger.info("monthly roll-up for %s: %d runs -> %s", report["month"], report["runs"], path)
