"""Slots: the scheduled time of one firing, as an aware UTC datetime with one text form."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo


def parse_slot(text: str) -> datetime:
    """Parse an RFC 3339 timestamp with an explicit offset into an aware UTC datetime."""
    if not isinstance(text, str) or "T" not in text.upper() or len(text) > 40:
        raise ValueError(f"slot must be an RFC 3339 timestamp, got {text!r:.60}")
    normalised = text.strip().upper().replace("Z", "+00:00")
    try:
        value = datetime.fromisoformat(normalised)
    except ValueError:
        raise ValueError(f"slot must be an RFC 3339 timestamp, got {text!r:.60}") from None
    if value.tzinfo is None:
        raise ValueError(f"slot needs a UTC offset (e.g. 'Z'), got {text!r:.60}")
    try:
        return value.astimezone(UTC)
    except OverflowError:  # a valid time whose UTC instant falls outside year 1..9999
        raise ValueError(f"slot lies outside the representable years, got {text!r:.60}") from None


def format_slot(value: datetime) -> str:
    """The one text form of a slot: `2026-11-22T15:00:00Z` (microseconds only when set)."""
    value = value.astimezone(UTC)
    spec = "seconds" if value.microsecond == 0 else "microseconds"
    return value.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


def logical_date(slot: datetime, zone: ZoneInfo) -> date:
    """The date a slot falls on in the batch time zone: the day the run is 'for'."""
    return slot.astimezone(zone).date()


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
