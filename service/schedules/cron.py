"""Cron fields read as EventBridge Scheduler reads them: values per field and the day rule.

Two spellings reach one `CronSpec`: AWS's `cron(min hour dom month dow year)` (day-of-week
1-7 = SUN-SAT, exactly one of day-of-month and day-of-week `?`, `L`, `W`, `#`; see
https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-cron-expressions.html) and the
standard 5-field cron (day-of-week 0-7, 0 and 7 = Sunday), which is accepted only where
EventBridge Scheduler can say the same thing.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from itertools import pairwise

from service.errors import ConfigError


class ScheduleError(ConfigError):
    """A schedule expression that EventBridge Scheduler would refuse or read another way."""


@dataclass(frozen=True)
class Field:
    """One cron field: its name, bounds and the names it accepts."""

    name: str
    lo: int
    hi: int
    names: tuple[str, ...] = ()
    name_base: int = 0

    def value(self, text: str) -> int:
        """One value of this field, by number or by name."""
        upper = text.upper()
        if upper in self.names:
            return self.names.index(upper) + self.name_base
        if not text.isdigit():
            raise ScheduleError(f"{self.name}: {text!r} is not a number or a name")
        number = int(text)
        if not self.lo <= number <= self.hi:
            raise ScheduleError(f"{self.name}: {number} is outside {self.lo}-{self.hi}")
        return number

    def values(self, text: str, *, steps: bool = True) -> frozenset[int]:
        """The set a field's text selects: `*`, `a`, `a-b`, `a/n`, `*/n`, `a-b/n`, lists of them."""
        found: set[int] = set()
        for item in text.split(","):
            base, slash, step_text = item.partition("/")
            if slash and not steps:
                raise ScheduleError(f"{self.name}: '/' is not allowed here")
            step = 1
            if slash:
                if not step_text.isdigit() or int(step_text) == 0:
                    raise ScheduleError(f"{self.name}: step {step_text!r} must be a positive number")
                step = int(step_text)
            if base == "*":
                lo, hi = self.lo, self.hi
            elif "-" in base:
                first, _, last = base.partition("-")
                lo, hi = self.value(first), self.value(last)
                if lo > hi:
                    raise ScheduleError(f"{self.name}: range {base!r} runs backwards")
            else:
                lo = self.value(base)
                hi = self.hi if slash else lo
            found.update(range(lo, hi + 1, step))
        return frozenset(found)


DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
MINUTE = Field("minutes", 0, 59)
HOUR = Field("hours", 0, 23)
DOM = Field("day-of-month", 1, 31)
MONTH = Field("month", 1, 12, MONTHS, 1)
AWS_DOW = Field("day-of-week", 1, 7, DAYS, 1)  # AWS: 1 = SUN ... 7 = SAT
UNIX_DOW = Field("day-of-week", 0, 7, DAYS, 0)  # standard cron: 0 and 7 = SUN
YEAR = Field("year", 1970, 2199)
#: The most days each month can have (February 29 in leap years).
MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def aws_weekday(number: int) -> int:
    """AWS's day-of-week number (1 = SUN) as Python's weekday (0 = Monday)."""
    return (number + 5) % 7


def unix_weekday(number: int) -> int:
    """Standard cron's day-of-week number (0 or 7 = SUN) as Python's weekday (0 = Monday)."""
    return (number + 6) % 7


@dataclass(frozen=True)
class DayRule:
    """Which days of a month fire: by day of month, by day of week, or every day."""

    dom: frozenset[int] | None = None
    last_day: bool = False  # L
    last_weekday: bool = False  # LW
    nearest_weekday: int | None = None  # nW
    dow: frozenset[int] | None = None  # Python weekdays
    nth: tuple[int, int] | None = None  # n#k: (weekday, k)
    last_dow: int | None = None  # nL: the month's last such weekday

    def matches(self, day: date) -> bool:
        """True when the rule selects this date."""
        last = calendar.monthrange(day.year, day.month)[1]
        if self.dom is not None:
            return day.day in self.dom
        if self.last_day:
            return day.day == last
        if self.last_weekday:
            return day.day == _weekday_near(day.year, day.month, last, last)
        if self.nearest_weekday is not None:
            return day.day == _weekday_near(day.year, day.month, self.nearest_weekday, last)
        if self.dow is not None:
            return day.weekday() in self.dow
        if self.nth is not None:
            return day.weekday() == self.nth[0] and (day.day - 1) // 7 + 1 == self.nth[1]
        if self.last_dow is not None:
            return day.weekday() == self.last_dow and day.day + 7 > last
        return True


def _weekday_near(year: int, month: int, wanted: int, last: int) -> int | None:
    """The weekday nearest to day `wanted` within its month (Quartz's `W`); None if no such day."""
    if wanted > last:
        return None
    weekday = date(year, month, wanted).weekday()
    if weekday == 5:  # Saturday: the Friday before, or the Monday after the 1st
        return wanted - 1 if wanted > 1 else wanted + 2
    if weekday == 6:  # Sunday: the Monday after, or the Friday before the month's last day
        return wanted + 1 if wanted < last else wanted - 2
    return wanted


@dataclass(frozen=True)
class CronSpec:
    """A parsed cron expression: the values of each field and the day rule."""

    minutes: frozenset[int]
    hours: frozenset[int]
    months: frozenset[int]
    years: frozenset[int] | None
    days: DayRule
    aws: str  # the expression as EventBridge Scheduler takes it, `cron(...)`

    def times(self) -> list[tuple[int, int]]:
        """Every (hour, minute) of a firing day, in order."""
        return [(h, m) for h in sorted(self.hours) for m in sorted(self.minutes)]


def parse_aws(fields: list[str]) -> CronSpec:
    """AWS's six fields `min hour dom month dow year`, by AWS's rules."""
    minute, hour, dom, month, dow, year = (f.upper() for f in fields)
    for name, text in (("minutes", minute), ("hours", hour), ("month", month), ("year", year)):
        if "?" in text:
            raise ScheduleError(f"{name}: '?' is only allowed in day-of-month or day-of-week")
    if (dom == "?") == (dow == "?"):
        raise ScheduleError(
            "exactly one of day-of-month and day-of-week must be '?' "
            f"(got {dom!r} and {dow!r}); AWS cannot combine them"
        )
    days = _aws_dow(dow) if dom == "?" else _aws_dom(dom)
    spec = CronSpec(
        MINUTE.values(minute),
        HOUR.values(hour),
        MONTH.values(month),
        None if year == "*" else YEAR.values(year),
        days,
        f"cron({minute} {hour} {dom} {month} {dow} {year})",
    )
    _check_fires(spec)
    return spec


def _aws_dom(text: str) -> DayRule:
    if text == "L":
        return DayRule(last_day=True)
    if text == "LW":
        return DayRule(last_weekday=True)
    if text.endswith("W"):
        return DayRule(nearest_weekday=DOM.value(text[:-1]))
    if any(mark in text for mark in "LW?#"):
        raise ScheduleError(f"day-of-month: {text!r} (L, LW and nW stand alone; '#' is day-of-week's)")
    return DayRule() if text == "*" else DayRule(dom=DOM.values(text))


def _aws_dow(text: str) -> DayRule:
    if text == "L":  # the last day of the week: Saturday
        return DayRule(dow=frozenset({aws_weekday(7)}))
    if "#" in text:
        weekday, _, nth = text.partition("#")
        if "," in text or not nth.isdigit() or not 1 <= int(nth) <= 5:
            raise ScheduleError(f"day-of-week: {text!r} must be one 'day#n' with n from 1 to 5")
        return DayRule(nth=(aws_weekday(AWS_DOW.value(weekday)), int(nth)))
    if text.endswith("L"):
        return DayRule(last_dow=aws_weekday(AWS_DOW.value(text[:-1])))
    if any(mark in _marks(text) for mark in "L?W"):
        raise ScheduleError(f"day-of-week: {text!r} ('L' stands alone or after one day; 'W' is not allowed)")
    if text == "*":
        return DayRule()
    # EventBridge's day-of-week takes `, - * ? L #`, not `/`.
    return DayRule(dow=frozenset(aws_weekday(n) for n in AWS_DOW.values(text, steps=False)))


def parse_unix(fields: list[str]) -> CronSpec:
    """A standard 5-field cron expression, refused where EventBridge Scheduler cannot say the same."""
    minute, hour, dom, month, dow = (f.upper() for f in fields)
    for text in fields:
        if any(mark in _marks(text.upper()) for mark in "?LW#"):
            raise ScheduleError(
                f"{text!r}: '?', 'L', 'W' and '#' are AWS syntax; write the six-field cron(...) form"
            )
    if dom != "*" and dow != "*":
        # Standard cron fires on either day then; EventBridge Scheduler can only say one of them.
        raise ScheduleError(
            "day-of-month and day-of-week are both restricted, which standard cron reads as 'either'; "
            "EventBridge Scheduler cannot, so restrict one of them (or write cron(...) with '?')"
        )
    if dom != "*":
        days = DayRule(dom=DOM.values(dom))
    elif dow != "*":
        days = DayRule(dow=frozenset(unix_weekday(n) for n in UNIX_DOW.values(dow)))
    else:
        days = DayRule()
    minutes, hours, months = MINUTE.values(minute), HOUR.values(hour), MONTH.values(month)
    aws = " ".join(
        [
            _compact(minutes, MINUTE),
            _compact(hours, HOUR),
            _compact(days.dom, DOM) if days.dom is not None else ("*" if days.dow is None else "?"),
            _compact(months, MONTH),
            "?" if days.dow is None else _aws_days(days.dow),
            "*",
        ]
    )
    spec = CronSpec(minutes, hours, months, None, days, f"cron({aws})")
    _check_fires(spec)
    return spec


def _compact(values: frozenset[int], field: Field) -> str:
    """A field's values in AWS's spelling: `*`, `a/n`, or a list of `a` and `a-b`."""
    ordered = sorted(values)
    if len(ordered) == field.hi - field.lo + 1:
        return "*"
    steps = {b - a for a, b in pairwise(ordered)}
    step = steps.pop() if len(steps) == 1 else 1
    if len(ordered) > 2 and step > 1 and ordered[-1] + step > field.hi:
        return f"{ordered[0]}/{step}"  # AWS's `a/n`: from a to the field's end
    return ",".join(_runs(ordered, str))


def _aws_days(weekdays: frozenset[int]) -> str:
    """Python weekdays as AWS day names, runs as ranges: `MON-FRI`, `SUN,SAT`."""
    numbers = sorted((w + 1) % 7 + 1 for w in weekdays)  # AWS numbering, 1 = SUN
    return ",".join(_runs(numbers, lambda n: DAYS[n - 1]))


def _runs(ordered: list[int], name: Callable[[int], str]) -> list[str]:
    """Consecutive values folded into `a-b`, others listed singly."""
    parts: list[str] = []
    start = previous = ordered[0]
    for value in [*ordered[1:], None]:
        if value is not None and value == previous + 1:
            previous = value
            continue
        parts.append(name(start) if start == previous else f"{name(start)}-{name(previous)}")
        if value is not None:
            start = previous = value
    return parts


def _marks(text: str) -> str:
    """The field without day and month names, so that `WED` or `JUL` do not read as `W` or `L`."""
    return re.sub("|".join(DAYS + MONTHS), "", text)


def _check_fires(spec: CronSpec) -> None:
    """Refuse a day of month that none of the chosen months has (`31 2`): it would never fire."""
    if spec.days.dom is not None and min(spec.days.dom) > max(MONTH_DAYS[m - 1] for m in spec.months):
        raise ScheduleError("that day of month never occurs in the chosen months")
