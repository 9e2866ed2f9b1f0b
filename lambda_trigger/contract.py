"""What the Lambda and the service agree on without sharing code: job names, slots, token lifetime.

`lambda_trigger` ships alone in its zip and never imports `service`, so these values are written
on both sides; tests/test_contract_constants.py imports both and pins them to each other.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

# A job name: 1-63 lower-case ASCII letters, digits, '-' or '_'. Always applied with
# `fullmatch`: a pattern ending in `$` would also accept the name followed by a newline.
JOB_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
# Token subjects that name no job: `drain` drains one instance, `read` reads every job's runs.
# A trigger never carries them, whatever an event or RULE_JOBS says.
RESERVED_SUBJECTS = frozenset({"drain", "read"})
MAX_TOKEN_LIFETIME = 300  # seconds; the service refuses tokens that live longer
# RFC 3339 section 5.6 date-time: a `T`, seconds, an offset (`Z` or ±hh:mm). ASCII digits only:
# `\d` would also take other scripts' digits. Basic format (20260605T000000Z), week and ordinal
# dates, missing seconds or offset are all refused, though `datetime.fromisoformat` reads them.
SLOT_FORMAT = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?(?:[Zz]|[+-][0-9]{2}:[0-9]{2})"
)
# The slots the product accepts: what both ledgers store and read back, in UTC, both ends included.
EARLIEST_SLOT = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_SLOT = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)


def check_job_name(name: object) -> str:
    """Return `name` if a trigger may name it as its job; else raise `ValueError` saying why."""
    if not isinstance(name, str) or not JOB_NAME.fullmatch(name):
        raise ValueError(f"job must be 1-63 lower-case ASCII letters, digits, '-' or '_', not {name!r}")
    if name in RESERVED_SUBJECTS:
        raise ValueError(f"job {name!r} is a reserved token subject, never a job")
    return name


def normalise_slot(value: object) -> str:
    """Return an RFC 3339 slot in the product's range as UTC text `2026-11-22T15:00:00Z`.

    Raises `ValueError` for anything else: another format, an impossible date, or a time
    outside 1970-01-01T00:00:00Z..9999-12-31T23:59:59Z once converted to UTC.
    """
    if not isinstance(value, str) or not SLOT_FORMAT.fullmatch(value):
        raise ValueError(f"slot must be an RFC 3339 time with a 'T', seconds and an offset, not {value!r}")
    try:
        utc = datetime.fromisoformat(value.upper()).astimezone(UTC)
    except (ValueError, OverflowError) as exc:  # month 13; or year 1 at +01:00, before UTC's range
        raise ValueError(f"slot {value!r} is not a valid time: {exc}") from None
    if not EARLIEST_SLOT <= utc <= LATEST_SLOT:
        raise ValueError(f"slot {value!r} is outside {_text(EARLIEST_SLOT)}..{_text(LATEST_SLOT)}")
    return _text(utc)


def _text(utc: datetime) -> str:
    spec = "microseconds" if utc.microsecond else "seconds"
    return utc.replace(tzinfo=None).isoformat(timespec=spec) + "Z"
