"""The missed-run watchdog: alerts when an expected slot has no successful run after its grace.

It catches the one failure nothing else can see — nothing arrived: a disabled rule, a deleted
schedule, a Lambda that never ran. Jobs declare their schedule (`@job(..., schedule="0 0 * * *")`,
read with EventBridge Scheduler's semantics in the job's `schedule_timezone` or `BATCH_TIMEZONE`:
service.schedules); every instance's keeper checks, and the ledger's `mark_missed` lets exactly
one of them report each missed slot. A paused job's slots are not judged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

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
        paused = self.ledger.pauses(now)
        for spec in scheduled:
            after = max(watched[spec.name], now - LOOKBACK)
            until = now - timedelta(seconds=spec.missed_after)
            expected = expected_slots(spec, self._zone(spec), after, until)
            if not expected:
                continue
            if spec.name in paused:
                # Slots due while a job is paused are not missed: its firings were skipped on purpose.
                self.ledger.mark_checked(spec.name, max(expected))
                continue
            # The Scheduler fires a time repeated at the fall-back once: either instant is the slot.
            names = {slot: _equivalents(spec, self._zone(spec), slot) for slot in expected}
            ran = self.ledger.succeeded_slots(spec.name, min(expected), max(max(n) for n in names.values()))
            for slot in [slot for slot in expected if not names[slot] & ran]:
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
    """The job's slots in (after, until] as EventBridge Scheduler fires them, newest last, at most
    MAX_SLOTS_CHECKED of them: a time in a spring-forward gap is not expected, a repeated one once."""
    schedule = spec.timetable(zone)
    if schedule is None or until <= after:
        return []
    slots = schedule.latest(until, after, MAX_SLOTS_CHECKED)
    # A time repeated at the fall-back may be fired at its second instant: it is due once that is.
    # (Only the newest slots can wait so, which keeps the list a prefix of the range.)
    return [slot for slot in slots if max(schedule.equivalents(slot)) <= until]


def _equivalents(spec: JobSpec, zone: ZoneInfo, slot: datetime) -> frozenset[datetime]:
    schedule = spec.timetable(zone)
    return frozenset({slot}) if schedule is None else schedule.equivalents(slot)
