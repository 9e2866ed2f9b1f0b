"""Schedule expressions with EventBridge Scheduler's semantics, evaluated in a time zone.

`Schedule.parse(text, zone)` reads a standard 5-field cron expression or AWS's own
`cron(min hour dom month dow year)`, `rate(N unit)` and `at(yyyy-mm-ddThh:mm:ss)`; anything
ambiguous is a `ScheduleError` (a configuration error) with a one-line reason.

Slots follow https://docs.aws.amazon.com/scheduler/latest/UserGuide/schedule-types.html: cron
and at() are wall-clock times in the zone; a time that does not exist at the spring-forward
change is skipped, a time repeated at the fall-back change fires once (at its first
occurrence). A rate is a fixed duration (a "day" is 24 hours), counted from the schedule's
StartDate: `batch-trigger schedules apply` sets that on a grid from 1970-01-01T00:00Z, so the
slots of `rate(N unit)` are the multiples of N units since then.

The evaluator is our own: cronsim and croniter follow cronie, which runs a gap time right after
the change where AWS skips it, and neither reads AWS's year field or `nW`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from service.schedules.cron import YEAR, CronSpec, ScheduleError, parse_aws, parse_unix

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
RATE = re.compile(r"(\d{1,9}) +(minute|minutes|hour|hours|day|days)")
AT = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)")
UNITS = {"minute": timedelta(minutes=1), "hour": timedelta(hours=1), "day": timedelta(days=1)}


def zone_of(name: str | ZoneInfo) -> ZoneInfo:
    """The IANA time zone of that name, or a ScheduleError."""
    if isinstance(name, ZoneInfo):
        return name
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(f"time zone {name!r} is not an IANA time zone") from None


@dataclass(frozen=True)
class Schedule:
    """A parsed schedule expression in its time zone."""

    text: str
    timezone: ZoneInfo
    kind: Literal["cron", "rate", "at"]
    cron: CronSpec | None = None
    every: timedelta | None = None
    at: datetime | None = None
    _aws: str = ""

    @classmethod
    def parse(cls, text: str, zone: str | ZoneInfo = "UTC") -> Schedule:
        """Read `text` in `zone`; a ScheduleError says in one line what is wrong with it."""
        tz = zone_of(zone)
        if not isinstance(text, str) or not text.strip():
            raise ScheduleError("a schedule expression is empty")
        try:
            return _parsed(" ".join(text.split()), tz)
        except ScheduleError as exc:
            raise ScheduleError(f"schedule {text.strip()!r}: {exc}") from None

    @classmethod
    def _parse(cls, text: str, tz: ZoneInfo) -> Schedule:
        wrapped = re.fullmatch(r"(\w+) ?\((.*)\)", text)
        if wrapped is None:
            fields = text.split(" ")
            if len(fields) == 5:
                spec = parse_unix(fields)
                return cls(text, tz, "cron", cron=spec, _aws=spec.aws)
            if len(fields) == 6:
                raise ScheduleError(
                    "six bare fields are ambiguous (seconds first, or AWS's year last?); "
                    "write AWS's form as cron(min hour day-of-month month day-of-week year)"
                )
            raise ScheduleError(
                f"not a schedule ({len(fields)} fields): write 5-field cron, cron(...), rate(...) or at(...)"
            )
        kind, body = wrapped.group(1), wrapped.group(2).strip()
        if kind == "cron":
            fields = body.split(" ")
            if len(fields) != 6:
                raise ScheduleError(f"cron(...) takes 6 fields (min hour dom month dow year): {len(fields)}")
            spec = parse_aws(fields)
            return cls(text, tz, "cron", cron=spec, _aws=spec.aws)
        if kind == "rate":
            return cls._rate(text, body, tz)
        if kind == "at":
            return cls._at(text, body, tz)
        raise ScheduleError(f"{kind}(...) is not a schedule form: use cron(...), rate(...) or at(...)")

    @classmethod
    def _rate(cls, text: str, body: str, tz: ZoneInfo) -> Schedule:
        match = RATE.fullmatch(body)
        if match is None:
            raise ScheduleError("rate(...) takes a positive number and minute(s), hour(s) or day(s)")
        value, unit = int(match.group(1)), match.group(2)
        if value == 0:
            raise ScheduleError("a rate must be at least 1")
        if (value == 1) != (not unit.endswith("s")):
            # AWS's own rule: rate(1 hours) and rate(5 hour) are refused.
            raise ScheduleError(f"write rate({value} {unit.rstrip('s') + ('' if value == 1 else 's')})")
        every = UNITS[unit.rstrip("s")] * value
        return cls(text, tz, "rate", every=every, _aws=f"rate({value} {unit})")

    @classmethod
    def _at(cls, text: str, body: str, tz: ZoneInfo) -> Schedule:
        match = AT.fullmatch(body)
        if match is None:
            raise ScheduleError("at(...) takes a local time yyyy-mm-ddThh:mm:ss")
        try:
            local = datetime.strptime(body, "%Y-%m-%dT%H:%M:%S")
        except ValueError as exc:
            raise ScheduleError(f"at(...): {exc}") from None
        if local.year not in range(YEAR.lo, YEAR.hi + 1):
            raise ScheduleError(f"at(...): the year must be {YEAR.lo}-{YEAR.hi}")
        instant = _resolve(local, tz)
        if instant is None:
            raise ScheduleError(f"at(...): {body} does not exist in {tz.key} (a daylight-saving gap)")
        return cls(text, tz, "at", at=instant, _aws=f"at({body})")

    def aws_expression(self) -> str:
        """The ScheduleExpression EventBridge Scheduler takes for this schedule."""
        return self._aws

    @property
    def zone_name(self) -> str:
        """The IANA name of the schedule's time zone (ScheduleExpressionTimezone)."""
        return self.timezone.key

    def next_after(self, moment: datetime) -> datetime | None:
        """The first slot strictly after `moment` (aware), or None when there is none."""
        return next((slot for slot in self.forward(moment) if slot > moment), None)

    def slots_between(self, start: datetime, end: datetime, limit: int | None = None) -> list[datetime]:
        """The slots from `start` to `end`, both included, oldest first (at most `limit`)."""
        found: list[datetime] = []
        for slot in self.forward(start):
            if slot > end or (limit is not None and len(found) >= limit):
                break
            found.append(slot)
        return found

    def latest(self, until: datetime, after: datetime, limit: int) -> list[datetime]:
        """The newest slots in (after, until], at most `limit` of them, oldest first."""
        found: list[datetime] = []
        for slot in self.backward(until):
            if slot <= after or len(found) >= limit:
                break
            found.append(slot)
        return found[::-1]

    def equivalents(self, slot: datetime) -> frozenset[datetime]:
        """The instants that name this slot: a wall-clock time repeated at the fall-back has two.

        The Scheduler fires a repeated time once; counting either occurrence as the slot keeps a
        check from depending on which of the two it picked.
        """
        slot = slot.astimezone(UTC)
        if self.kind == "rate":
            return frozenset({slot})
        local = slot.astimezone(self.timezone)
        other = local.replace(fold=1 - local.fold).astimezone(UTC)
        return frozenset({slot, other})

    def start_date(self, now: datetime) -> datetime | None:
        """The StartDate a rate schedule needs to fire on its grid: its first slot from `now`."""
        if self.every is None:
            return None
        return next(self.forward(now))

    def forward(self, moment: datetime) -> Iterator[datetime]:
        """Slots at or after `moment`, oldest first (aware UTC)."""
        moment = moment.astimezone(UTC)
        if self.every is not None:
            steps = -((EPOCH - moment) // self.every)  # ceiling division
            slot = EPOCH + steps * self.every
            while slot.year <= YEAR.hi:
                yield slot
                slot += self.every
        elif self.at is not None:
            if self.at >= moment:
                yield self.at
        else:
            assert self.cron is not None
            yield from _cron_slots(self.cron, self.timezone, moment, reverse=False)

    def backward(self, moment: datetime) -> Iterator[datetime]:
        """Slots at or before `moment`, newest first (aware UTC)."""
        moment = moment.astimezone(UTC)
        if self.every is not None:
            slot = EPOCH + ((moment - EPOCH) // self.every) * self.every
            while slot >= EPOCH:
                yield slot
                slot -= self.every
        elif self.at is not None:
            if self.at <= moment:
                yield self.at
        else:
            assert self.cron is not None
            yield from _cron_slots(self.cron, self.timezone, moment, reverse=True)


def _resolve(local: datetime, zone: ZoneInfo) -> datetime | None:
    """A wall-clock time as UTC: None in a spring-forward gap, the first occurrence at a fall-back."""
    instant = local.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if instant.astimezone(zone).replace(tzinfo=None) != local:
        return None
    return instant


def _cron_slots(spec: CronSpec, zone: ZoneInfo, moment: datetime, *, reverse: bool) -> Iterator[datetime]:
    """Walk the calendar day by day from `moment`'s local date, yielding the firing instants."""
    times = spec.times()[::-1] if reverse else spec.times()
    step = timedelta(days=-1 if reverse else 1)
    # Start a day early (late): the instants are compared in UTC, and a zone's change may sit at midnight.
    day = moment.astimezone(zone).date() - step
    while YEAR.lo <= day.year <= YEAR.hi:
        if spec.years is not None and day.year not in spec.years:
            years = sorted(y for y in spec.years if (y < day.year if reverse else y > day.year))
            if not years:
                return
            day = date(years[-1], 12, 31) if reverse else date(years[0], 1, 1)
            continue
        if day.month not in spec.months:
            day = _month_edge(day, reverse)
            continue
        if spec.days.matches(day):
            for instant in _day_instants(day, times, zone):
                if instant <= moment if reverse else instant >= moment:
                    yield instant
        day += step


def _day_instants(day: date, times: list[tuple[int, int]], zone: ZoneInfo) -> Iterator[datetime]:
    """The instants of one local day's firing times, in the order given."""
    offset = datetime.combine(day, time(0), tzinfo=zone).utcoffset()
    if offset == datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone).utcoffset():
        # No change of offset that day (the common case): plain arithmetic, no round trip.
        assert offset is not None
        base = datetime.combine(day, time(0), tzinfo=UTC) - offset
        for hour, minute in times:
            yield base + timedelta(hours=hour, minutes=minute)
        return
    for hour, minute in times:
        instant = _resolve(datetime.combine(day, time(hour, minute)), zone)
        if instant is not None:
            yield instant


def _month_edge(day: date, reverse: bool) -> date:
    """The last day of the previous month (reverse) or the first of the next one."""
    if reverse:
        return day.replace(day=1) - timedelta(days=1)
    return (day.replace(day=28) + timedelta(days=4)).replace(day=1)


@functools.lru_cache(maxsize=1024)
def _parsed(text: str, tz: ZoneInfo) -> Schedule:
    """Schedules are immutable: each (expression, zone) is read once per process, not at every
    GET /v1/jobs or watchdog check."""
    return Schedule._parse(text, tz)
