"""lambda_trigger.events: which job, slot and event id an invocation's event names."""

from __future__ import annotations

import pytest

from lambda_trigger.events import Firing, UnreadableEvent, normalise_slot, read_event
from tests.lambda_support.lambda_env import load_event


def test_it_reads_the_job_from_a_default_bus_rule() -> None:
    assert read_event(load_event("scheduled-daily"), {}) == Firing(
        job="daily",
        slot="2026-11-22T15:00:00Z",
        event_id="89d1a02d-5ec7-412e-82f5-13505f849b41",
        rule="Daily",
    )


def test_it_reads_the_rule_name_after_a_custom_bus() -> None:
    firing = read_event(load_event("scheduled-custom-bus"), {"myapp-prod-Daily": "daily"})
    assert (firing.rule, firing.job, firing.slot) == ("myapp-prod-Daily", "daily", "2026-11-23T00:00:00Z")


def test_it_lower_cases_a_rule_that_rule_jobs_does_not_name() -> None:
    assert read_event(load_event("scheduled-monthly"), {"Daily": "daily"}).job == "monthly"
    assert read_event(load_event("unknown-rule"), {}).job == "weekly"


def test_it_reads_a_direct_payload_with_and_without_event_id() -> None:
    assert read_event(load_event("scheduler-direct"), {}) == Firing("daily", "2026-11-22T15:00:00Z")
    event = {"job": "daily", "slot": "2026-11-22T15:00:00Z", "event_id": "exec-1"}
    assert read_event(event, {}).event_id == "exec-1"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("2026-11-22T15:00:00Z", "2026-11-22T15:00:00Z"),
        ("2026-11-23T00:00:00+09:00", "2026-11-22T15:00:00Z"),
        ("2026-11-22t15:00:00z", "2026-11-22T15:00:00Z"),
        ("2026-11-22T15:00:00.250Z", "2026-11-22T15:00:00.250000Z"),
        ("2026-11-22T15:00:00.000Z", "2026-11-22T15:00:00Z"),
    ],
)
def test_it_normalises_slots_to_rfc3339_utc(given: str, expected: str) -> None:
    assert normalise_slot(given) == expected


@pytest.mark.parametrize(
    "event",
    [
        None,
        "daily",
        {},
        {"resources": []},
        {"resources": ["arn:aws:lambda:us-east-1:123456789012:function:x"], "time": "2026-11-22T15:00:00Z"},
        {"resources": ["arn:aws:events:us-east-1:123456789012:rule/Daily"]},
        {"job": "daily"},
        {"job": "Daily", "slot": "2026-11-22T15:00:00Z"},
        {"job": "../admin", "slot": "2026-11-22T15:00:00Z"},
        {"job": "daily", "slot": "2026-11-22 15:00"},
        {"job": "daily", "slot": "2026-11-22T15:00:00"},
        {"job": "daily", "slot": "2026-13-22T15:00:00Z"},
        {"job": "daily", "slot": 1763823600},
        {"job": "daily", "slot": "2026-11-22T15:00:00Z", "event_id": 7},
        {"job": "daily", "slot": "2026-11-22T15:00:00Z", "event_id": "x" * 201},
    ],
)
def test_it_refuses_events_it_cannot_read(event: object) -> None:
    with pytest.raises(UnreadableEvent):
        read_event(event, {})


def test_it_says_how_to_fix_a_rule_name_that_is_no_job_name() -> None:
    event = load_event("scheduled-daily") | {
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/Nightly.Batch"]
    }
    with pytest.raises(UnreadableEvent, match="RULE_JOBS"):
        read_event(event, {})
