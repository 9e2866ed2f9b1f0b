"""Every slot the service accepts round-trips through both ledgers (hypothesis, SQLite and PostgreSQL).

The accepted range is 1970-01-01T00:00:00Z..9999-12-31T23:59:59Z in UTC, both ends included, in
RFC 3339 with any offset and up to microseconds: what `service.slots.parse_slot` lets through.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from service.alerts import Alerts
from service.ledger import ClaimRequest, Ledger, Run, Status
from service.slots import EARLIEST_SLOT, LATEST_SLOT, format_slot, local_text, logical_date, parse_slot

NOW = datetime(2026, 12, 1, tzinfo=UTC)


@st.composite
def slot_texts(draw: st.DrawFn) -> str:
    """An RFC 3339 text of an instant, written in any offset and precision."""
    earliest, latest = EARLIEST_SLOT.replace(tzinfo=None), LATEST_SLOT.replace(tzinfo=None)
    # Mostly the accepted range; sometimes any year, which the parser must refuse or round-trip.
    utc = draw(st.datetimes(min_value=earliest, max_value=latest) | st.datetimes())
    minutes = draw(st.integers(-(23 * 60 + 59), 23 * 60 + 59) | st.sampled_from([0, 345, -570, 840, -720]))
    try:
        local = utc + timedelta(minutes=minutes)
    except OverflowError:  # the instant is representable, its local time in that offset is not
        minutes, local = 0, utc
    digits = draw(st.sampled_from([0, 1, 3, 6, 9]))
    fraction = f".{local.microsecond:06d}000"[: digits + 1] if digits else ""
    sign, magnitude = ("-" if minutes < 0 else "+"), abs(minutes)
    offset = f"{sign}{magnitude // 60:02d}:{magnitude % 60:02d}"
    if minutes == 0 and draw(st.booleans()):
        offset = draw(st.sampled_from("Zz"))
    separator = draw(st.sampled_from("Tt"))
    return f"{local.year:04d}-{local:%m-%d}{separator}{local:%H:%M:%S}{fraction}{offset}"


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=slot_texts())
@example(text="1970-01-01T00:00:00Z")
@example(text="9999-12-31T23:59:59Z")
@example(text="1970-01-01T05:45:00+05:45")
@example(text="9999-12-31T14:29:59-09:30")
@example(text="2026-03-08T02:30:00.123456-05:00")
@example(text="2038-01-19T03:14:08.000001Z")
@example(text="0999-06-05T00:00:00Z")
def test_every_accepted_slot_round_trips_through_the_ledger(ledger: Ledger, text: str) -> None:
    """Accepted, then claimed, read back by id, found again by slot, and claimed again as the same run."""
    try:
        slot = parse_slot(text)
    except ValueError:
        # Refused only outside the range.
        instant = datetime.fromisoformat(text.upper())
        assert instant.year < 1971 or instant.year > 9998
        assert not EARLIEST_SLOT <= instant <= LATEST_SLOT
        return
    ask = ClaimRequest(job="roundtrip", slot=slot, trigger="manual", instance="i-1", overlap="allow")
    first = ledger.claim(ask, NOW)
    stored = ledger.get(first.run.id)
    assert stored is not None and stored.slot == slot
    assert format_slot(stored.slot) == format_slot(slot) == stored.to_json()["slot"]
    again = ledger.claim(ask, NOW)
    assert again.run.id == first.run.id and again.outcome == "duplicate"
    assert first.run.id in {run.id for run in ledger.runs(job="roundtrip", slot=slot)}
    assert parse_slot(format_slot(slot)) == slot


def test_the_last_accepted_slot_is_alerted_and_dated_in_a_zone_ahead_of_utc() -> None:
    """9999-12-31T23:59:59Z is already year 10000 in Tokyo: alerts and logical dates still work."""
    tokyo = ZoneInfo("Asia/Tokyo")
    assert logical_date(LATEST_SLOT, tokyo) == date.max
    assert local_text(LATEST_SLOT, tokyo) == "after 9999-12-31 23:59 Asia/Tokyo"
    run = Run(
        id="0" * 32, job="daily", slot=LATEST_SLOT, attempt=1, status=Status.FAILED,
        trigger="manual", created_at=NOW, finished_at=NOW, error="boom",
    )  # fmt: skip
    Alerts(None, tokyo, "i-1").run_ended(run)  # no webhook: logged only, and no OverflowError
