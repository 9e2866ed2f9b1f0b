"""The missed-run watchdog under freezegun: one alert per missed slot, none for slots that ran."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from freezegun import freeze_time

from service.alerts import Alerts
from service.config import Secret
from service.jobs import JobSpec, Registry
from service.ledger import ClaimRequest, Ledger, Status, open_ledger
from service.ops.watchdog import Watchdog, expected_slots
from service.slots import parse_slot, utcnow
from tests.support import bulk
from tests.support.slack import SlackReceiver

TOKYO = ZoneInfo("Asia/Tokyo")


def _noop(ctx: object) -> None:
    return None


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    """A real SQLite ledger in a temporary file."""
    opened = open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    opened.ensure_schema()
    yield opened
    opened.close()


@pytest.fixture
def watchdog(ledger: Ledger, slack: SlackReceiver) -> Watchdog:
    """A watchdog over one daily job expected at midnight Tokyo, alerting a local Slack stand-in."""
    registry = Registry()
    registry.add(JobSpec("daily", _noop, schedule="0 0 * * *", missed_after=3600))
    registry.add(JobSpec("unscheduled", _noop))
    return Watchdog(registry, ledger, Alerts(Secret(slack.url), TOKYO, "i-1"), TOKYO)


def _succeed(ledger: Ledger, slot: str) -> None:
    when = parse_slot(slot)
    run = ledger.claim(ClaimRequest("daily", when, "schedule", "i-1"), when).run
    ledger.start(run.id, "i-1", when, timedelta(seconds=60))
    ledger.finish(run.id, Status.SUCCEEDED, when + timedelta(minutes=1))


def test_it_alerts_once_for_a_missed_daily_slot(watchdog: Watchdog, slack: SlackReceiver) -> None:
    before = len(slack.messages)
    with freeze_time("2026-11-21T15:30:00Z") as clock:
        assert watchdog.check(utcnow()) == []  # starts watching: nothing is due yet
        clock.move_to("2026-11-22T15:30:00Z")  # the 2026-11-23 slot is due, but within its grace
        assert watchdog.check(utcnow()) == []
        clock.move_to("2026-11-22T16:00:01Z")  # grace over, no run arrived
        missed = watchdog.check(utcnow())
        assert [(m.job, m.slot) for m in missed] == [("daily", parse_slot("2026-11-22T15:00:00Z"))]
        clock.move_to("2026-11-22T17:00:00Z")
        assert watchdog.check(utcnow()) == []  # not twice
    texts = [m["text"] for m in slack.wait_for(before + 1)[before:]]
    assert len(texts) == 1 and "`daily` missed its 2026-11-22T15:00:00Z run" in texts[0]
    assert "batch-trigger trigger daily --slot 2026-11-22T15:00:00Z" in texts[0]


def test_it_does_not_alert_for_a_slot_that_ran(
    watchdog: Watchdog, ledger: Ledger, slack: SlackReceiver
) -> None:
    before = len(slack.messages)
    with freeze_time("2026-11-21T15:30:00Z") as clock:
        watchdog.check(utcnow())
        _succeed(ledger, "2026-11-22T15:00:00Z")
        clock.move_to("2026-11-23T12:00:00Z")
        assert watchdog.check(utcnow()) == []
    assert len(slack.messages) == before


def test_it_alerts_when_the_slot_only_failed(watchdog: Watchdog, ledger: Ledger) -> None:
    with freeze_time("2026-11-21T15:30:00Z") as clock:
        watchdog.check(utcnow())
        when = parse_slot("2026-11-22T15:00:00Z")
        run = ledger.claim(ClaimRequest("daily", when, "schedule", "i-1"), when).run
        ledger.finish(run.id, Status.FAILED, when, "boom")
        clock.move_to("2026-11-22T16:30:00Z")
        assert [m.slot for m in watchdog.check(utcnow())] == [when]


def test_it_lets_only_one_of_several_instances_report_a_slot(ledger: Ledger, slack: SlackReceiver) -> None:
    registry = Registry()
    registry.add(JobSpec("daily", _noop, schedule="0 0 * * *"))
    alerts = Alerts(Secret(slack.url), TOKYO, "i-1")
    fleet = [Watchdog(registry, ledger, alerts, TOKYO) for _ in range(3)]
    with freeze_time("2026-11-21T15:30:00Z") as clock:
        fleet[0].check(utcnow())
        clock.move_to("2026-11-22T16:30:00Z")
        reports = [watchdog.check(utcnow()) for watchdog in fleet]
    assert [len(r) for r in reports] == [1, 0, 0]


def test_it_does_not_judge_slots_from_before_it_began_watching(watchdog: Watchdog) -> None:
    with freeze_time("2026-11-25T12:00:00Z"):
        assert watchdog.check(utcnow()) == []


def test_it_expects_local_midnights_across_a_dst_change() -> None:
    spec = JobSpec("daily", _noop, schedule="0 0 * * *")
    slots = expected_slots(
        spec,
        ZoneInfo("America/New_York"),
        parse_slot("2026-03-07T12:00:00Z"),
        parse_slot("2026-03-09T12:00:00Z"),
    )
    assert slots == [parse_slot("2026-03-08T05:00:00Z"), parse_slot("2026-03-09T04:00:00Z")]


def test_it_expects_the_shipped_jobs_at_local_midnight() -> None:
    from service.jobs import load_jobs

    registry = load_jobs(())
    daily, monthly = registry.get("daily"), registry.get("monthly")
    window = (parse_slot("2026-11-22T00:00:00Z"), parse_slot("2026-12-01T00:00:00Z"))
    assert expected_slots(daily, TOKYO, *window)[0] == parse_slot("2026-11-22T15:00:00Z")
    assert expected_slots(monthly, TOKYO, *window) == [parse_slot("2026-11-30T15:00:00Z")]


def test_it_sends_a_constant_few_statements_per_sweep_over_40_days_of_missed_slots(ledger: Ledger) -> None:
    """An hourly and a daily job that never run, swept every 15 minutes for 40 days: each sweep
    sends the same few statements (counted at the ledger's one SQL hook), however many missed
    slots the look-back holds, and each slot is reported once."""
    registry = Registry()
    registry.add(JobSpec("hourly", _noop, schedule="0 * * * *", missed_after=600))
    registry.add(JobSpec("daily", _noop, schedule="0 0 * * *", missed_after=3600))
    watchdog = Watchdog(registry, ledger, Alerts(None, TOKYO, "i-1"), TOKYO)
    start = parse_slot("2026-10-01T00:05:00Z")
    watchdog.check(start)
    counts: dict[int, set[int]] = {}
    reported = 0
    for step in range(1, 40 * 24 * 4 + 1):
        with bulk.recorded(ledger) as statements:
            reported += len(watchdog.check(start + step * timedelta(minutes=15)))
        counts.setdefault(len(statements), set()).add(step)
    # One read of where the checks ended (and of the pauses), plus per newly due slot: the succeeded
    # slots, the record of the report and where the check ended. Nothing grows with the look-back.
    # Every hourly slot but the last (its grace runs past the end) and every daily one, once.
    assert reported == (40 * 24 - 1) + 40
    assert max(counts) <= 2 + 2 * 3, sorted(counts)
    quiet = min(counts)
    assert quiet <= 2 and len(counts[quiet]) > 2_000
    assert set(counts) <= {quiet, quiet + 3, quiet + 6}, sorted(counts)
