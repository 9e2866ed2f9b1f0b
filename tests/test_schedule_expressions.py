"""Schedule expressions read as EventBridge Scheduler reads them: table tests of the parser.

Expected slots are worked out by hand from AWS's documentation: the cron reference
(https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-cron-expressions.html) and the
Scheduler's schedule types, time zones and daylight saving time
(https://docs.aws.amazon.com/scheduler/latest/UserGuide/schedule-types.html): a time in the
spring-forward gap is skipped, a repeated fall-back time fires once, a rate is a fixed duration.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from cronsim import CronSim

from service.errors import ConfigError
from service.schedules import Schedule, ScheduleError


def at(text: str) -> datetime:
    """An aware UTC datetime from `2026-11-22T10:00`."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def first(schedule: Schedule, start: str, count: int) -> list[str]:
    """The first `count` slots at or after `start`, as `YYYY-MM-DDTHH:MM` in UTC."""
    slots = schedule.slots_between(at(start), at("2199-12-31T23:59"), limit=count)
    return [slot.strftime("%Y-%m-%dT%H:%M") for slot in slots]


# AWS's documented examples (2026-11-22 is a Sunday; times in UTC+0 as the examples say).
AWS_EXAMPLES = [
    ("cron(0 10 * * ? *)", "2026-11-22T12:00", ["2026-11-23T10:00", "2026-11-24T10:00"]),
    ("cron(15 12 * * ? *)", "2026-11-22T12:00", ["2026-11-22T12:15", "2026-11-23T12:15"]),
    ("cron(0 18 ? * MON-FRI *)", "2026-11-20T19:00", ["2026-11-23T18:00", "2026-11-24T18:00"]),
    ("cron(0 8 1 * ? *)", "2026-11-22T00:00", ["2026-12-01T08:00", "2027-01-01T08:00"]),
    ("cron(0/15 * * * ? *)", "2026-11-22T12:05", ["2026-11-22T12:15", "2026-11-22T12:30"]),
    ("cron(0/10 * ? * MON-FRI *)", "2026-11-22T23:55", ["2026-11-23T00:00", "2026-11-23T00:10"]),
    ("cron(0/5 8-17 ? * MON-FRI *)", "2026-11-23T17:51", ["2026-11-23T17:55", "2026-11-24T08:00"]),
    ("cron(0 9 ? * 2#1 *)", "2026-11-22T00:00", ["2026-12-07T09:00", "2027-01-04T09:00"]),
    ("cron(15 10 ? * 6L 2022-2023)", "2023-11-01T00:00", ["2023-11-24T10:15", "2023-12-29T10:15"]),
    ("cron(1/10 * * * ? *)", "2026-11-22T12:00", ["2026-11-22T12:01", "2026-11-22T12:11"]),
    ("cron(0 0 L * ? *)", "2026-02-01T00:00", ["2026-02-28T00:00", "2026-03-31T00:00"]),
    # 2026-02-28 is a Saturday and 2026-05-31 a Sunday: the last weekday is the Friday before.
    ("cron(0 0 LW 2,5 ? *)", "2026-01-01T00:00", ["2026-02-27T00:00", "2026-05-29T00:00"]),
    # 2026-02-15 is a Sunday (-> Monday 16th), 2026-08-15 a Saturday (-> Friday 14th).
    ("cron(0 0 15W 2,8 ? *)", "2026-01-01T00:00", ["2026-02-16T00:00", "2026-08-14T00:00"]),
    # 2026-08-01 is a Saturday: W does not leave the month, so Monday the 3rd.
    ("cron(0 0 1W 8 ? *)", "2026-01-01T00:00", ["2026-08-03T00:00"]),
    ("cron(0 0 ? * L *)", "2026-11-22T00:00", ["2026-11-28T00:00", "2026-12-05T00:00"]),
    ("cron(0 0 ? * 1 *)", "2026-11-23T00:00", ["2026-11-29T00:00"]),  # 1 = SUN in AWS
    ("cron(30 6 7 JAN,jul ? 2027/2)", "2026-01-01T00:00", ["2027-01-07T06:30", "2027-07-07T06:30"]),
]


@pytest.mark.parametrize(("text", "start", "expected"), AWS_EXAMPLES)
def test_it_reads_aws_documentation_examples(text: str, start: str, expected: list[str]) -> None:
    schedule = Schedule.parse(text, "UTC")
    assert first(schedule, start, len(expected)) == expected
    assert schedule.aws_expression() == text.upper().replace("CRON(", "cron(")


def test_it_ends_a_schedule_whose_years_are_over() -> None:
    assert Schedule.parse("cron(15 10 ? * 6L 2022-2023)", "UTC").next_after(at("2023-12-30T00:00")) is None


# Both DST changes in two zones. 2026: New York springs forward on 8 March at 02:00 and falls
# back on 1 November at 02:00; London on 29 March at 01:00 and 25 October at 02:00.
DST = [
    # spring forward: 02:30 does not exist on 8 March in New York -> skipped, not moved to 03:30
    ("30 2 * * *", "America/New_York", "2026-03-07T00:00", ["2026-03-07T07:30", "2026-03-09T06:30"]),
    ("cron(0 * * * ? *)", "America/New_York", "2026-03-08T05:30", ["2026-03-08T06:00", "2026-03-08T07:00"]),
    # fall back: 01:30 happens twice on 1 November -> once, at its first occurrence (EDT)
    ("30 1 * * *", "America/New_York", "2026-10-31T00:00",
     ["2026-10-31T05:30", "2026-11-01T05:30", "2026-11-02T06:30"]),
    ("cron(0 * * * ? *)", "America/New_York", "2026-11-01T04:30",
     ["2026-11-01T05:00", "2026-11-01T07:00", "2026-11-01T08:00"]),
    ("0 0 * * *", "America/New_York", "2026-10-31T00:00", ["2026-10-31T04:00", "2026-11-01T04:00",
                                                          "2026-11-02T05:00"]),
    # London: 01:30 does not exist on 29 March; 01:30 repeats on 25 October
    ("30 1 * * *", "Europe/London", "2026-03-28T00:00", ["2026-03-28T01:30", "2026-03-30T00:30"]),
    ("0 2 * * *", "Europe/London", "2026-03-28T00:00",
     ["2026-03-28T02:00", "2026-03-29T01:00", "2026-03-30T01:00"]),
    ("30 1 * * *", "Europe/London", "2026-10-24T00:00",
     ["2026-10-24T00:30", "2026-10-25T00:30", "2026-10-26T01:30"]),
    ("cron(0/30 1 * * ? *)", "Europe/London", "2026-10-25T00:00",
     ["2026-10-25T00:00", "2026-10-25T00:30", "2026-10-26T01:00"]),
    # a rate is a fixed duration: 24 hours apart in UTC whatever the zone does
    ("rate(1 day)", "America/New_York", "2026-10-31T12:00", ["2026-11-01T00:00", "2026-11-02T00:00"]),
    ("rate(1 hour)", "Europe/London", "2026-10-25T00:30", ["2026-10-25T01:00", "2026-10-25T02:00"]),
]


@pytest.mark.parametrize(("text", "zone", "start", "expected"), DST)
def test_it_skips_the_gap_and_fires_a_repeated_time_once(
    text: str, zone: str, start: str, expected: list[str]
) -> None:
    assert first(Schedule.parse(text, zone), start, len(expected)) == expected


def test_it_walks_backwards_through_a_dst_change_as_forwards() -> None:
    schedule = Schedule.parse("cron(0/30 * * * ? *)", "America/New_York")
    forward = schedule.slots_between(at("2026-10-31T00:00"), at("2026-11-02T12:00"))
    assert schedule.latest(at("2026-11-02T12:00"), at("2026-10-30T23:59"), 10_000) == forward
    assert len(forward) == 60 * 2 + 1 - 2  # 60 hours of half-hours, less the repeated hour's two


def test_it_counts_either_occurrence_of_a_repeated_time_as_the_slot() -> None:
    schedule = Schedule.parse("30 1 * * *", "America/New_York")
    assert schedule.equivalents(at("2026-11-01T05:30")) == {at("2026-11-01T05:30"), at("2026-11-01T06:30")}
    assert schedule.equivalents(at("2026-11-02T06:30")) == {at("2026-11-02T06:30")}


RATES = [
    ("rate(1 minute)", "2026-11-22T12:00:30", ["2026-11-22T12:01", "2026-11-22T12:02"]),
    ("rate(5 minutes)", "2026-11-22T12:01", ["2026-11-22T12:05", "2026-11-22T12:10"]),
    ("rate(2 hours)", "2026-11-22T01:30", ["2026-11-22T02:00", "2026-11-22T04:00"]),
    ("rate(1 day)", "2026-11-22T00:00", ["2026-11-22T00:00", "2026-11-23T00:00"]),
    # 1970-01-01 was a Thursday
    ("rate(7 days)", "2026-11-22T00:00", ["2026-11-26T00:00", "2026-12-03T00:00"]),
]


@pytest.mark.parametrize(("text", "start", "expected"), RATES)
def test_it_counts_rates_on_a_grid_from_1970(text: str, start: str, expected: list[str]) -> None:
    schedule = Schedule.parse(text, "Asia/Tokyo")
    assert first(schedule, start, len(expected)) == expected
    assert schedule.aws_expression() == text
    assert schedule.start_date(at(start)) == at(expected[0])


def test_it_fires_at_once_in_its_zone() -> None:
    schedule = Schedule.parse("at(2026-11-20T13:00:00)", "America/Los_Angeles")
    assert first(schedule, "2026-01-01T00:00", 5) == ["2026-11-20T21:00"]
    assert schedule.next_after(at("2026-11-20T21:00")) is None
    assert schedule.aws_expression() == "at(2026-11-20T13:00:00)"
    assert schedule.zone_name == "America/Los_Angeles"
    # a repeated local time: the first occurrence, as for cron
    assert first(Schedule.parse("at(2026-11-01T01:30:00)", "America/New_York"), "2026-01-01T00:00", 1) == [
        "2026-11-01T05:30"
    ]


# Standard 5-field cron, and what EventBridge Scheduler is given for it.
TRANSLATIONS = [
    ("0 0 * * *", "cron(0 0 * * ? *)"),
    ("0 0 1 * *", "cron(0 0 1 * ? *)"),
    ("30 9 * * 1-5", "cron(30 9 ? * MON-FRI *)"),
    ("0 2 * * 0", "cron(0 2 ? * SUN *)"),
    ("0 2 * * 7", "cron(0 2 ? * SUN *)"),
    ("0 2 * * 5-7", "cron(0 2 ? * SUN,FRI-SAT *)"),
    ("*/15 * * * *", "cron(0/15 * * * ? *)"),
    ("5-20/5 8-17 * * sat,Sun", "cron(5,10,15,20 8-17 ? * SUN,SAT *)"),
    ("0 0 */2 jan-mar *", "cron(0 0 1/2 1-3 ? *)"),
    ("  0   6 * * *  ", "cron(0 6 * * ? *)"),
]


@pytest.mark.parametrize(("text", "aws"), TRANSLATIONS)
def test_it_gives_the_scheduler_the_same_schedule_in_aws_form(text: str, aws: str) -> None:
    unix, translated = Schedule.parse(text, "Europe/London"), Schedule.parse(aws, "Europe/London")
    assert unix.aws_expression() == aws
    assert first(unix, "2026-03-01T00:00", 300) == first(translated, "2026-03-01T00:00", 300)


@pytest.mark.parametrize(
    "text",
    ["* * * * *", "7 */3 * * *", "0 0 29 2 *", "0 12 * * 1,3,5", "15 4 1-7 * *", "0 0 31 * *", "59 23 * 12 0",
     "*/20 9-17 * * 1-5"],
)
def test_it_agrees_with_cronsim_in_utc(text: str) -> None:
    # In UTC there is no DST rule to differ on, so cronsim (cronie's semantics) is an oracle.
    oracle = CronSim(text, datetime(2026, 1, 1))
    expected = [slot.strftime("%Y-%m-%dT%H:%M") for slot, _ in zip(oracle, range(400), strict=False)]
    expected = [slot for slot in expected if slot < "2200"]  # AWS's years end with 2199
    assert first(Schedule.parse(text, "UTC"), "2026-01-01T00:00:01", 400) == expected


MALFORMED = [
    ("0 0 * * ? *", "six bare fields are ambiguous"),
    ("0 0 0 * * ? *", "not a schedule (7 fields)"),
    ("@daily", "not a schedule"),
    ("", "empty"),
    ("cron(0 0 * * * *)", "exactly one of day-of-month and day-of-week must be '?'"),
    ("cron(0 0 ? * ? *)", "exactly one of day-of-month and day-of-week must be '?'"),
    ("cron(0 0 1 * MON *)", "exactly one of day-of-month and day-of-week must be '?'"),
    ("cron(? 0 1 * ? *)", "minutes: '?' is only allowed in day-of-month or day-of-week"),
    ("cron(0 0 1 ? ? *)", "month: '?' is only allowed"),
    ("cron(0 0 * * ?)", "cron(...) takes 6 fields"),
    ("cron(60 0 * * ? *)", "minutes: 60 is outside 0-59"),
    ("cron(0 24 * * ? *)", "hours: 24 is outside 0-23"),
    ("cron(0 0 0 * ? *)", "day-of-month: 0 is outside 1-31"),
    ("cron(0 0 ? * 0 *)", "day-of-week: 0 is outside 1-7"),
    ("cron(0 0 * 13 ? *)", "month: 13 is outside 1-12"),
    ("cron(0 0 * * ? 1969)", "year: 1969 is outside 1970-2199"),
    ("cron(0 0 5-1 * ? *)", "range '5-1' runs backwards"),
    ("cron(0/0 0 * * ? *)", "step '0' must be a positive number"),
    ("cron(0 0 ? * */2 *)", "day-of-week: '/' is not allowed"),
    ("cron(0 0 ? * 3#1,6#3 *)", "must be one 'day#n'"),
    ("cron(0 0 ? * 2#6 *)", "must be one 'day#n'"),
    ("cron(0 0 1,L * ? *)", "L, LW and nW stand alone"),
    ("cron(0 0 ? * 2W *)", "'W' is not allowed"),
    ("cron(0 0 31 2 ? *)", "never occurs"),
    ("cron(0 0 * FOO ? *)", "month: 'FOO' is not a number or a name"),
    ("0 0 1 * MON", "both restricted"),
    ("0 0 L * *", "AWS syntax"),
    ("0 0 ? * MON", "AWS syntax"),
    ("0 0 * * 1#2", "AWS syntax"),
    ("0 0 * * 8", "day-of-week: 8 is outside 0-7"),
    ("rate(1 minutes)", "write rate(1 minute)"),
    ("rate(5 hour)", "write rate(5 hours)"),
    ("rate(0 days)", "at least 1"),
    ("rate(5 weeks)", "rate(...) takes a positive number"),
    ("rate(-5 minutes)", "rate(...) takes a positive number"),
    ("at(2026-03-08T02:30:00)", "does not exist in America/New_York"),
    ("at(2026-02-30T00:00:00)", "day is out of range"),
    ("at(2026-11-22 10:00:00)", "at(...) takes a local time"),
    ("every(5 minutes)", "not a schedule form"),
]


@pytest.mark.parametrize(("text", "reason"), MALFORMED)
def test_it_refuses_a_malformed_expression_in_one_line(text: str, reason: str) -> None:
    with pytest.raises(ScheduleError) as refused:
        Schedule.parse(text, "America/New_York")
    assert isinstance(refused.value, ConfigError)  # the service refuses to start on it
    message = str(refused.value)
    assert reason in message and "\n" not in message


def test_it_refuses_an_unknown_time_zone() -> None:
    with pytest.raises(ScheduleError, match="'Mars/Olympus' is not an IANA time zone"):
        Schedule.parse("0 0 * * *", "Mars/Olympus")
