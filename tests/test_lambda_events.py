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


def rule_event(rule: str, slot: str = "2026-11-22T15:00:00Z") -> dict[str, object]:
    """The daily sample event, fired by a rule of another name."""
    arn = f"arn:aws:events:us-east-1:123456789012:rule/{rule}"
    return load_event("scheduled-daily") | {"resources": [arn], "time": slot}


@pytest.mark.parametrize(
    ("event", "shown"),
    [
        (rule_event("Daily\n"), r"'Daily\n'"),
        ({"job": "daily\n", "slot": "2026-11-22T15:00:00Z"}, r"'daily\n'"),
        # The Kelvin sign lower-cases to an ASCII "k": the rule must not become the job "keys".
        (rule_event("\u212aeys"), "'\u212aeys'"),
        (rule_event("Da\u200bily"), r"'Da\u200bily'"),
    ],
)
def test_it_refuses_a_name_with_a_newline_or_non_ascii_and_shows_it_as_received(
    event: dict[str, object], shown: str
) -> None:
    with pytest.raises(UnreadableEvent) as refused:
        read_event(event, {})
    assert shown in str(refused.value)


@pytest.mark.parametrize(
    ("event", "rule_jobs"),
    [
        ({"job": "drain", "slot": "2026-11-22T15:00:00Z"}, {}),
        ({"job": "read", "slot": "2026-11-22T15:00:00Z"}, {}),
        (rule_event("Drain"), {}),
        (rule_event("READ"), {}),
        (rule_event("Nightly"), {"Nightly": "drain"}),
    ],
)
def test_it_never_takes_a_reserved_token_subject_for_a_job(
    event: dict[str, object], rule_jobs: dict[str, str]
) -> None:
    with pytest.raises(UnreadableEvent, match="reserved"):
        read_event(event, rule_jobs)


def test_it_takes_job_names_of_up_to_63_characters() -> None:
    slot = "2026-11-22T15:00:00Z"
    assert read_event({"job": "a" * 63, "slot": slot}, {}).job == "a" * 63
    with pytest.raises(UnreadableEvent):
        read_event({"job": "a" * 64, "slot": slot}, {})


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("1970-01-01T00:00:00Z", "1970-01-01T00:00:00Z"),
        ("1970-01-01T01:00:00+01:00", "1970-01-01T00:00:00Z"),
        ("9999-12-31T23:59:59Z", "9999-12-31T23:59:59Z"),
        ("9999-12-31T23:59:59.000Z", "9999-12-31T23:59:59Z"),
    ],
)
def test_it_takes_slots_at_both_ends_of_the_range(given: str, expected: str) -> None:
    assert normalise_slot(given) == expected


@pytest.mark.parametrize(
    "slot",
    [
        "20260605T000000Z",  # ISO 8601 basic format
        "2026-W23-5T00:00:00Z",  # ISO week date
        "2026-156T00:00:00Z",  # ordinal date
        "2026-06-05T00:00Z",  # no seconds
        "2026-06-05T00:00:00",  # no offset
        "2026-06-05T00:00:00+0000",  # offset without its colon
        "2026-06-05 00:00:00Z",  # no T
        "2026-06-05T00:00:00Z\n",
        "\u0662\u0660\u0662\u0666-06-05T00:00:00Z",  # Arabic-Indic digits match \d
        "1969-12-31T23:59:59Z",
        "1970-01-01T00:30:00+01:00",  # 1969 in UTC
        "0999-01-01T00:00:00Z",
        "0001-01-01T00:00:00+01:00",  # before year 1 in UTC
        "9999-12-31T23:59:59.5Z",
        "9999-12-31T23:59:59-01:00",  # year 10000 in UTC
    ],
)
def test_it_refuses_slots_outside_the_format_or_the_range(slot: str) -> None:
    with pytest.raises(UnreadableEvent, match="slot"):
        normalise_slot(slot)
