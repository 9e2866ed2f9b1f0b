"""The missed-run watchdog: alerts when an expected slot has no successful run after its grace.

It catches the one failure nothing else can see — nothing arrived: a disabled rule, a deleted
schedule, a Lambda that never ran. Jobs declare their schedule (`@job(..., schedule="0 0 * * *")`,
a cron expression in the job's `schedule_timezone` or `BATCH_TIMEZONE`); every instance's keeper
checks, and the ledger's `mark_missed` lets exactly one of them report each missed slot.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import croniter

from service.alerts import Alerts
from service.jobs import JobSpec, Registry
from service.ledger import Ledger
from service.slots import format_slot

log = logging.getLogger("batch_trigger.watchdog")
#: At most this many past slots of a job are checked per sweep (a minutely job stays cheap).
MAX_SLOTS_CHECKED = 50
#: Slots older than this are not checked: a monthly job's last slot is always within it.
LOOKBACK = timedelta(days=40)


@dataclass(frozen=True)
class Missed:
    """An expected slot without a successful run, past its grace."""

    job: str
    slot: datetime
    due_since: timedelta


class Watchdog:
    """Compares each scheduled job's expected slots with the ledger's successful runs."""

    def __init__(self, registry: Registry, ledger: Ledger, alerts: Alerts, default_zone: ZoneInfo) -> None:
        self.registry = registry
        self.ledger = ledger
        self.alerts = alerts
        self.default_zone = default_zone

    def check(self, now: datetime) -> list[Missed]:
        """Report (once, fleet-wide) every expected slot that has no successful run after its grace."""
        reported: list[Missed] = []
        scheduled = [spec for spec in self.registry if spec.schedule is not None]
        if not scheduled:
            return reported
        # Where the fleet's last check of each job ended (or when it was first watched: slots due
        # before a new deployment are not the watchdog's to judge), for all jobs in one read. Only
        # slots that came due since are judged, so a sweep costs this read plus a few statements
        # per newly due slot, whatever the look-back holds.
        watched = self.ledger.watch_from([spec.name for spec in scheduled], now)
        for spec in scheduled:
            after = max(watched[spec.name], now - LOOKBACK)
            until = now - timedelta(seconds=spec.missed_after)
            expected = expected_slots(spec, self._zone(spec), after, until)
            if not expected:
                continue
            ran = self.ledger.succeeded_slots(spec.name, min(expected), max(expected))
            for slot in sorted(set(expected) - ran):
                if self.ledger.mark_missed(spec.name, slot, now):
                    missed = Missed(spec.name, slot, now - slot)
                    log.warning(
                        "missed slot %s of %s", format_slot(slot), spec.name, extra={"job": spec.name}
                    )
                    self.alerts.missed(spec.name, slot, missed.due_since)
                    reported.append(missed)
            self.ledger.mark_checked(spec.name, max(expected))
        return reported

    def _zone(self, spec: JobSpec) -> ZoneInfo:
        return ZoneInfo(spec.schedule_timezone) if spec.schedule_timezone else self.default_zone


def expected_slots(spec: JobSpec, zone: ZoneInfo, after: datetime, until: datetime) -> list[datetime]:
    """The job's scheduled times in (after, until], newest last, at most MAX_SLOTS_CHECKED of them."""
    if until <= after:
        return []
    cron = croniter(spec.schedule, until.astimezone(zone) + timedelta(microseconds=1))
    found: list[datetime] = []
    while len(found) < MAX_SLOTS_CHECKED:
        slot: datetime = cron.get_prev(datetime).astimezone(after.tzinfo)
        if slot <= after:
            break
        found.append(slot)
    return sorted(found)
