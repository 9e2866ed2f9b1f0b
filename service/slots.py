"""Slots: the scheduled time of one firing, as an aware UTC datetime with one text form."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

# RFC 3339 section 5.6 date-time: a `T`, seconds, an optional fraction and an offset (`Z` or
# ±hh:mm). ASCII digits only (`\d` also takes other scripts' digits). `datetime.fromisoformat`
# alone would also read the basic format (20260605T000000Z), week dates, missing seconds or a
# missing offset. The same pattern is written in lambda_trigger/contract.py.
SLOT_FORMAT = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?(?:[Zz]|[+-][0-9]{2}:[0-9]{2})"
)
# The slots the product accepts, in UTC, both ends included: every one of them is stored and read
# back unchanged by both ledgers (SQLite writes a four-digit year; earlier years did not read back).
EARLIEST_SLOT = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_SLOT = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)


def parse_slot(text: str) -> datetime:
    """Parse an RFC 3339 time with an offset, within EARLIEST_SLOT..LATEST_SLOT, into aware UTC."""
    if not isinstance(text, str) or not SLOT_FORMAT.fullmatch(text):
        raise ValueError(
            f"slot must be an RFC 3339 timestamp with a 'T', seconds and an offset"
            f" (e.g. 2026-11-22T15:00:00Z), got {text!r:.60}"
        )
    outside = f"slot lies outside {format_slot(EARLIEST_SLOT)}..{format_slot(LATEST_SLOT)}, got {text!r:.60}"
    try:
        value = datetime.fromisoformat(text.upper()).astimezone(UTC)
    except ValueError:  # month 13, hour 24, offset +24:00
        raise ValueError(f"slot is not a valid time, got {text!r:.60}") from None
    except OverflowError:  # a valid local time whose UTC instant falls outside year 1..9999
        raise ValueError(outside) from None
    if not EARLIEST_SLOT <= value <= LATEST_SLOT:
        raise ValueError(outside)
    return value


def format_slot(value: datetime) -> str:
    """The one text form of a slot: `2026-11-22T15:00:00Z` (microseconds only when set)."""
    value = value.astimezone(UTC)
    spec = "seconds" if value.microsecond == 0 else "microseconds"
    return value.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


def logical_date(slot: datetime, zone: ZoneInfo) -> date:
    """The date a slot falls on in the batch time zone: the day the run is 'for'."""
    try:
        return slot.astimezone(zone).date()
    except OverflowError:  # the last hours of 9999 in a zone ahead of UTC: its local date is 10000-01-01
        return date.max


def local_text(slot: datetime, zone: ZoneInfo) -> str:
    """The slot as people read it in `zone`, e.g. `2026-11-23 00:00 Asia/Tokyo`."""
    try:
        return slot.astimezone(zone).strftime(f"%Y-%m-%d %H:%M {zone.key}")
    except OverflowError:  # the last hours of 9999 in a zone ahead of UTC
        return f"after 9999-12-31 23:59 {zone.key}"


def day_window(day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The UTC bounds [start, end) of one local day; 23 or 25 hours long across DST changes."""
    start = datetime.combine(day, time(0), tzinfo=zone)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone)
    return start.astimezone(UTC), end.astimezone(UTC)


def slot_for_date(day: date, zone: ZoneInfo) -> datetime:
    """The slot of a run whose logical date is `day`: that local midnight, in UTC."""
    return day_window(day, zone)[0]


def utcnow() -> datetime:
    """The current time as an aware UTC datetime (freezegun moves it in tests)."""
    return datetime.now(UTC)
