"""The values the Lambda and the service each write down (the Lambda never imports `service`) agree.

lambda_trigger/contract.py holds the Lambda's copy; each test imports both sides and pins them.
"""

from __future__ import annotations

import pytest

from lambda_trigger import contract
from lambda_trigger.tokens import DRAIN_LIFETIME
from service import jobs, slots
from service.web import auth

SLOTS = [
    "2026-11-22T15:00:00Z",
    "2026-11-23T00:00:00+09:00",
    "2026-11-22t15:00:00.250z",
    "1970-01-01T00:00:00Z",
    "1970-01-01T01:00:00+01:00",
    "9999-12-31T23:59:59Z",
    "1969-12-31T23:59:59Z",
    "9999-12-31T23:59:59.5Z",
    "9999-12-31T23:59:59-01:00",
    "0001-01-01T00:00:00+01:00",
    "20260605T000000Z",
    "2026-W23-5T00:00:00Z",
    "2026-06-05T00:00Z",
    "2026-06-05T00:00:00",
    "2026-13-05T00:00:00Z",
    "2026-06-05T00:00:00Z\n",
]
NAMES = [
    "daily",
    "a" * 63,
    "a" * 64,
    "daily\n",
    "Daily",
    "-daily",
    "dai.ly",
    "\u212aeys",
    "drain",
    "read",
    "",
]


def test_it_pins_the_job_name_pattern_and_the_reserved_subjects() -> None:
    assert (contract.JOB_NAME.pattern, contract.JOB_NAME.flags) == (
        jobs.JOB_NAME.pattern,
        jobs.JOB_NAME.flags,
    )
    assert contract.RESERVED_SUBJECTS == jobs.RESERVED_NAMES == {auth.READ_SUBJECT, auth.DRAIN_SUBJECT}


@pytest.mark.parametrize("name", NAMES)
def test_it_takes_the_same_job_names_on_both_sides(name: str) -> None:
    service_takes = bool(jobs.JOB_NAME.fullmatch(name)) and name not in jobs.RESERVED_NAMES
    try:
        contract.check_job_name(name)
    except ValueError:
        assert not service_takes
    else:
        assert service_takes


def test_it_pins_the_token_lifetimes() -> None:
    assert contract.MAX_TOKEN_LIFETIME == auth.MAX_LIFETIME_SECONDS == 300
    assert DRAIN_LIFETIME == auth.DRAIN_LIFETIME_SECONDS


def test_it_pins_the_slot_format_and_range() -> None:
    assert (contract.SLOT_FORMAT.pattern, contract.SLOT_FORMAT.flags) == (
        slots.SLOT_FORMAT.pattern,
        slots.SLOT_FORMAT.flags,
    )
    assert (contract.EARLIEST_SLOT, contract.LATEST_SLOT) == (slots.EARLIEST_SLOT, slots.LATEST_SLOT)


@pytest.mark.parametrize("text", SLOTS)
def test_it_reads_each_slot_alike_on_both_sides(text: str) -> None:
    try:
        expected = slots.format_slot(slots.parse_slot(text))
    except ValueError:
        with pytest.raises(ValueError):
            contract.normalise_slot(text)
    else:
        assert contract.normalise_slot(text) == expected
