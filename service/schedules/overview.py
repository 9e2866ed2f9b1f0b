"""One line per job for operators: its schedule, next due time, last run and success, pause."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from service.jobs import JobSpec
from service.ledger import Pause, Run
from service.slots import format_slot


def overview(
    spec: JobSpec, zone: ZoneInfo, now: datetime, last: Run | None, success: Run | None, pause: Pause | None
) -> dict[str, Any]:
    """What `GET /v1/jobs` adds to a job's policy: when it fires next, how it went, whether paused."""
    schedule = spec.timetable(zone)
    due = schedule.next_after(now) if schedule is not None else None
    return {
        "timezone": (schedule.zone_name if schedule else zone.key),
        "aws_expression": schedule.aws_expression() if schedule else None,
        "next_due": format_slot(due) if due else None,
        "next_due_local": due.astimezone(schedule.timezone).isoformat() if due and schedule else None,
        "last_run": last.to_json() if last else None,
        "last_success": success.to_json() if success else None,
        "paused": pause is not None,
        "pause": pause.to_json() if pause else None,
    }


def table(jobs: list[dict[str, Any]]) -> str:
    """`GET /v1/jobs`'s answer as an aligned text table for people."""
    columns = ["JOB", "SCHEDULE", "TIMEZONE", "NEXT DUE (UTC)", "NEXT DUE (LOCAL)", "LAST RUN"]
    columns += ["LAST SUCCESS", "PAUSED"]
    rows = []
    for job in jobs:
        last, success, pause = job.get("last_run"), job.get("last_success"), job.get("pause")
        rows.append([
            job["name"],
            job.get("schedule") or "-",
            job.get("timezone") or "-",
            job.get("next_due") or "-",
            (job.get("next_due_local") or "-")[:16].replace("T", " "),
            f"{last['status']} {last['slot']}" if last else "-",
            success["slot"] if success else "-",
            _paused(pause) if job.get("paused") else "no",
        ])
    widths = [max([len(c), *(len(r[i]) for r in rows)]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(line.rstrip() for line in lines) if jobs else "no jobs"


def _paused(pause: dict[str, Any] | None) -> str:
    if not pause:
        return "yes"
    until = f" until {pause['until']}" if pause.get("until") else ""
    return f"yes ({pause['paused_by']}{until})"
