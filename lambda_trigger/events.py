"""Reading an invocation's event: which job, which slot, which event id."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, NamedTuple

JOB_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
MAX_EVENT_ID = 200  # the service refuses longer `event_id` claims
# RFC 3339 section 5.6 date-time; an offset is mandatory, so a naive time never becomes a slot.
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})$")
# arn:PARTITION:events:REGION:ACCOUNT:rule/NAME, or rule/BUS/NAME for a rule on a custom bus.
_RULE_ARN = re.compile(r"^arn:aws[a-z-]*:events:[^:]*:[^:]*:rule/(?:(?P<bus>[^/]+)/)?(?P<name>[^/]+)$")


class UnreadableEvent(ValueError):
    """The event names no job and slot this Lambda can trigger."""


class Firing(NamedTuple):
    """One scheduled firing to deliver: the job, its slot (RFC 3339 UTC) and where it came from."""

    job: str
    slot: str
    event_id: str | None = None
    rule: str | None = None


def read_event(event: object, rule_jobs: Mapping[str, str]) -> Firing:
    """Turn an EventBridge scheduled event or a direct `{"job", "slot"}` payload into a `Firing`."""
    if not isinstance(event, Mapping):
        raise UnreadableEvent(f"expected a JSON object, got {type(event).__name__}")
    if "resources" in event:
        return _scheduled_event(event, rule_jobs)
    if "job" in event:
        return _direct_payload(event)
    raise UnreadableEvent(
        "neither an EventBridge scheduled event (no 'resources') nor a direct payload (no 'job')"
    )


def normalise_slot(value: object) -> str:
    """Return an RFC 3339 time as UTC in the form `2026-11-22T15:00:00Z`."""
    if not isinstance(value, str) or not _RFC3339.match(value):
        raise UnreadableEvent(f"slot must be an RFC 3339 time with an offset, not {value!r}")
    try:
        utc = datetime.fromisoformat(value.upper()).astimezone(UTC)
    except (ValueError, OverflowError) as exc:  # month 13; or year 1 at +01:00, before UTC's range
        raise UnreadableEvent(f"slot {value!r} is not a valid time: {exc}") from None
    spec = "microseconds" if utc.microsecond else "seconds"
    return utc.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


def check_job(job: object) -> str:
    """Return `job` if it is a valid job name, else raise `UnreadableEvent`."""
    if not isinstance(job, str) or not JOB_NAME.match(job):
        raise UnreadableEvent(f"job must match {JOB_NAME.pattern}, not {job!r}")
    return job


def describe(event: object, limit: int = 400) -> str:
    """A short, printable excerpt of an event for alerts and logs."""
    try:
        text = json.dumps(event, sort_keys=True, default=repr)
    except (TypeError, ValueError):
        text = repr(event)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _scheduled_event(event: Mapping[str, Any], rule_jobs: Mapping[str, str]) -> Firing:
    resources = event.get("resources")
    if not isinstance(resources, list) or not resources or not isinstance(resources[0], str):
        raise UnreadableEvent("'resources' must be a list starting with the rule's ARN")
    match = _RULE_ARN.match(resources[0])
    if not match:
        raise UnreadableEvent(f"{resources[0]!r} is not an EventBridge rule ARN")
    rule = match["name"]
    job = rule_jobs.get(rule, rule.lower())
    try:
        check_job(job)
    except UnreadableEvent:
        raise UnreadableEvent(
            f"rule {rule!r} maps to {job!r}, which is not a job name; add it to RULE_JOBS"
        ) from None
    return Firing(job, normalise_slot(event.get("time")), _event_id(event.get("id")), rule)


def _direct_payload(event: Mapping[str, Any]) -> Firing:
    job, slot = check_job(event.get("job")), normalise_slot(event.get("slot"))
    return Firing(job, slot, _event_id(event.get("event_id")))


def _event_id(value: object) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > MAX_EVENT_ID:
        raise UnreadableEvent(f"event id must be a string of at most {MAX_EVENT_ID} characters")
    return value
