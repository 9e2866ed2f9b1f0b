"""The shipped jobs and their logical dates: time zones, month ends, leap years, DST."""

from __future__ import annotations

import json
import logging
from datetime import date, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from freezegun import freeze_time

from service.batches.daily import daily, processed_day
from service.batches.monthly import monthly, processed_month
from service.jobs import JobContext
from service.ledger import ClaimRequest, Status, open_ledger
from service.slots import logical_date, parse_slot, slot_for_date, utcnow

TOKYO, NEW_YORK = ZoneInfo("Asia/Tokyo"), ZoneInfo("America/New_York")


def _context(tmp_path: Path, job: str, slot: str, zone: ZoneInfo) -> JobContext:
    ledger = open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger.ensure_schema()
    when = parse_slot(slot)
    return JobContext(
        run_id="r1",
        job=job,
        slot=when,
        logical_date=logical_date(when, zone),
        attempt=1,
        params={},
        logger=logging.LoggerAdapter(logging.getLogger("test"), {}),
        timezone=zone,
        ledger=ledger,
        artefact_dir=tmp_path / "artefacts",
    )


def test_it_dates_the_daily_tokyo_run_and_processes_the_day_before(tmp_path: Path) -> None:
    ctx = _context(tmp_path, "daily", "2026-11-22T15:00:00Z", TOKYO)
    assert ctx.logical_date == date(2026, 11, 23)
    assert processed_day(ctx.logical_date) == date(2026, 11, 22)
    daily(ctx)
    report = json.loads((tmp_path / "artefacts" / "daily" / "2026-11-22.json").read_text())
    assert report["window"] == {"start": "2026-11-21T15:00:00Z", "end": "2026-11-22T15:00:00Z", "hours": 24.0}


def test_it_counts_the_runs_of_the_processed_day_only(tmp_path: Path) -> None:
    ctx = _context(tmp_path, "daily", "2026-11-22T15:00:00Z", TOKYO)
    for hour, job in ((14, "count"), (16, "count"), (3, "boom")):
        created = parse_slot(f"2026-11-22T{hour:02d}:00:00Z")
        claim = ctx.ledger.claim(ClaimRequest(job, created, "manual", "i1"), created)
        ctx.ledger.finish(claim.run.id, Status.FAILED if job == "boom" else Status.SUCCEEDED, created)
    daily(ctx)
    report = json.loads((tmp_path / "artefacts" / "daily" / "2026-11-22.json").read_text())
    assert report["runs"] == 2  # 16:00Z is already the 23rd in Tokyo
    assert report["by_job"] == {"boom": {"failed": 1}, "count": {"succeeded": 1}}
    assert [f["job"] for f in report["failures"]] == ["boom"]


def test_it_rewrites_the_same_artefact_when_run_again(tmp_path: Path) -> None:
    ctx = _context(tmp_path, "daily", "2026-11-22T15:00:00Z", TOKYO)
    daily(ctx)
    daily(ctx)
    assert [p.name for p in (tmp_path / "artefacts" / "daily").iterdir()] == ["2026-11-22.json"]


def test_it_rolls_up_november_from_the_month_end_tokyo_firing(tmp_path: Path) -> None:
    ctx = _context(tmp_path, "monthly", "2026-11-30T15:00:00Z", TOKYO)
    assert ctx.logical_date == date(2026, 12, 1)
    assert processed_month(ctx.logical_date) == (date(2026, 11, 1), date(2026, 12, 1))
    monthly(ctx)
    report = json.loads((tmp_path / "artefacts" / "monthly" / "2026-11.json").read_text())
    assert (report["month"], report["days"]) == ("2026-11", 30)
    assert report["window"] == {"start": "2026-10-31T15:00:00Z", "end": "2026-11-30T15:00:00Z"}


def test_it_rolls_up_29_days_for_february_of_a_leap_year(tmp_path: Path) -> None:
    ctx = _context(tmp_path, "monthly", "2028-02-29T15:00:00Z", TOKYO)
    assert ctx.logical_date == date(2028, 3, 1)
    monthly(ctx)
    report = json.loads((tmp_path / "artefacts" / "monthly" / "2028-02.json").read_text())
    assert (report["month"], report["days"]) == ("2028-02", 29)


def test_it_handles_january_rolling_up_december_of_the_previous_year() -> None:
    assert processed_month(date(2027, 1, 1)) == (date(2026, 12, 1), date(2027, 1, 1))


def test_it_processes_a_23_hour_day_across_the_spring_dst_change_in_new_york(tmp_path: Path) -> None:
    # Midnight in New York is 05:00Z in winter (EST) and 04:00Z in summer (EDT).
    ctx = _context(tmp_path, "daily", "2026-03-09T04:00:00Z", NEW_YORK)
    assert ctx.logical_date == date(2026, 3, 9)
    daily(ctx)
    report = json.loads((tmp_path / "artefacts" / "daily" / "2026-03-08.json").read_text())
    assert report["window"] == {"start": "2026-03-08T05:00:00Z", "end": "2026-03-09T04:00:00Z", "hours": 23.0}


def test_it_processes_a_25_hour_day_across_the_autumn_dst_change_in_new_york(tmp_path: Path) -> None:
    ctx = _context(tmp_path, "daily", "2026-11-02T05:00:00Z", NEW_YORK)
    daily(ctx)
    report = json.loads((tmp_path / "artefacts" / "daily" / "2026-11-01.json").read_text())
    assert report["window"]["hours"] == 25.0


def test_it_maps_a_logical_date_back_to_its_midnight_slot() -> None:
    assert slot_for_date(date(2026, 11, 23), TOKYO) == parse_slot("2026-11-22T15:00:00Z")
    assert slot_for_date(date(2026, 3, 9), NEW_YORK) == parse_slot("2026-03-09T04:00:00Z")


@freeze_time("2026-11-22T15:30:00Z")
def test_it_takes_today_in_the_batch_time_zone_as_the_default_logical_date() -> None:
    assert logical_date(utcnow(), TOKYO) == date(2026, 11, 23)
    assert logical_date(utcnow(), NEW_YORK) == date(2026, 11, 22)
    assert utcnow() - parse_slot("2026-11-22T15:00:00Z") == timedelta(minutes=30)
