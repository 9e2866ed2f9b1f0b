"""The watchdog expects slots as EventBridge Scheduler fires them: across DST changes, not while paused.

On both ledgers (the `ledger` fixture of tests/support/ledgers.py).
"""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from freezegun import freeze_time

from service.alerts import Alerts
from service.config import Secret
from service.jobs import JobSpec, Registry
from service.ledger import ClaimRequest, Ledger, Status
from service.ops.watchdog import Watchdog
from service.slots import parse_slot, utcnow
from tests.support.slack import SlackReceiver

NEW_YORK = ZoneInfo("America/New_York")
#: 01:30 New York after the fall-back, in UTC.
AFTER = ["2026-11-02T06:30:00Z", "2026-11-03T06:30:00Z", "2026-11-04T06:30:00Z", "2026-11-05T06:30:00Z"]


def _noop(ctx: object) -> None:
    return None


def _watchdog(ledger: Ledger, slack: SlackReceiver, schedule: str) -> Watchdog:
    registry = Registry()
    registry.add(JobSpec("nightly", _noop, schedule=schedule, missed_after=1800))
    return Watchdog(registry, ledger, Alerts(Secret(slack.url), NEW_YORK, "i-1"), NEW_YORK)


def _succeed(ledger: Ledger, slot: str) -> None:
    when = parse_slot(slot)
    run = ledger.claim(ClaimRequest("nightly", when, "schedule", "i-1"), when).run
    ledger.start(run.id, "i-1", when, timedelta(seconds=60))
    ledger.finish(run.id, Status.SUCCEEDED, when + timedelta(minutes=1))


def _week(watchdog: Watchdog, start: str, fire: list[str], ledger: Ledger) -> list[str]:
    """Check hourly for a week from `start`, the given slots running on time; the slots reported."""
    reported: list[str] = []
    with freeze_time(start) as clock:
        watchdog.check(utcnow())
        for hour in range(7 * 24):
            now = parse_slot(start) + timedelta(hours=hour)
            clock.move_to(now)
            for slot in [s for s in fire if parse_slot(s) <= now]:
                fire.remove(slot)
                _succeed(ledger, slot)
            reported += [m.slot.strftime("%Y-%m-%dT%H:%MZ") for m in watchdog.check(utcnow())]
    return reported


@pytest.mark.parametrize("second_occurrence", [False, True])
def test_it_raises_no_alert_across_the_fall_back_for_a_job_that_fired_once(
    ledger: Ledger, slack: SlackReceiver, second_occurrence: bool
) -> None:
    # 01:30 New York happens twice on 2026-11-01; the Scheduler fires it once. Either instant it
    # names is that slot, so the watchdog does not wait for the other one.
    night = "2026-11-01T06:30:00Z" if second_occurrence else "2026-11-01T05:30:00Z"
    fired = ["2026-10-30T05:30:00Z", "2026-10-31T05:30:00Z", night, *AFTER]
    watchdog = _watchdog(ledger, slack, "30 1 * * *")
    assert _week(watchdog, "2026-10-29T12:00:00Z", fired, ledger) == []


def test_it_expects_nothing_in_the_spring_forward_gap(ledger: Ledger, slack: SlackReceiver) -> None:
    # 02:30 does not exist in New York on 2026-03-08: the Scheduler skips it, and so does the watchdog.
    fired = ["2026-03-06T07:30:00Z", "2026-03-07T07:30:00Z", "2026-03-09T06:30:00Z", "2026-03-10T06:30:00Z",
             "2026-03-11T06:30:00Z", "2026-03-12T06:30:00Z"]
    assert _week(_watchdog(ledger, slack, "cron(30 2 * * ? *)"), "2026-03-05T12:00:00Z", fired, ledger) == []


def test_it_alerts_once_for_the_one_slot_that_did_not_fire(ledger: Ledger, slack: SlackReceiver) -> None:
    before = len(slack.messages)
    fired = ["2026-10-30T05:30:00Z", "2026-10-31T05:30:00Z", *AFTER]
    reported = _week(_watchdog(ledger, slack, "30 1 * * *"), "2026-10-29T12:00:00Z", fired, ledger)
    assert reported == ["2026-11-01T05:30Z"]
    texts = [m["text"] for m in slack.wait_for(before + 1)[before:]]
    assert len(texts) == 1 and "missed its 2026-11-01T05:30:00Z run" in texts[0]


def test_it_ignores_the_slots_of_a_paused_job(ledger: Ledger, slack: SlackReceiver) -> None:
    watchdog = _watchdog(ledger, slack, "0 0 * * *")
    with freeze_time("2026-11-20T12:00:00Z") as clock:
        watchdog.check(utcnow())
        ledger.pause("nightly", "cli", "migration", None, utcnow())
        clock.move_to("2026-11-23T12:00:00Z")  # three midnights passed without a run
        assert watchdog.check(utcnow()) == []
        ledger.resume("nightly", utcnow())
        clock.move_to("2026-11-24T12:00:00Z")  # resumed: the next midnight is expected again
        assert [m.slot for m in watchdog.check(utcnow())] == [parse_slot("2026-11-24T05:00:00Z")]
