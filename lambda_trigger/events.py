"""Reading an invocation's event: which job, which slot, which event id."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, NamedTuple

from lambda_trigger import contract

MAX_EVENT_ID = 200  # the service refuses longer `event_id` claims
# arn:PARTITION:events:REGION:ACCOUNT:rule/NAME, or rule/BUS/NAME for a rule on a custom bus.
# Applied with `fullmatch`, never `$`, which would let a trailing newline into the name.
_RULE_ARN = re.compile(r"arn:aws[a-z-]*:events:[^:]*:[^:]*:rule/(?:(?P<bus>[^/]+)/)?(?P<name>[^/]+)")
# The characters EventBridge allows in a rule name: ASCII only, so lower-casing cannot turn one
# name into another job's (str.lower maps the Kelvin sign U+212A to "k").
_RULE_NAME = re.compile(r"[.\-_A-Za-z0-9]{1,64}")


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
    """Return an RFC 3339 slot in the product's range as UTC, e.g. `2026-11-22T15:00:00Z`."""
    try:
        return contract.normalise_slot(value)
    except ValueError as exc:
        raise UnreadableEvent(str(exc)) from None


def check_job(job: object) -> str:
    """Return `job` if a trigger may name it (a job name, not reserved), else raise `UnreadableEvent`."""
    try:
        return contract.check_job_name(job)
    except ValueError as exc:
        raise UnreadableEvent(str(exc)) from None


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
    match = _RULE_ARN.fullmatch(resources[0])
    if not match:
        raise UnreadableEvent(f"{resources[0]!r} is not an EventBridge rule ARN")
    rule = match["name"]
    if not _RULE_NAME.fullmatch(rule):
        # Shown as received (repr: a newline or an invisible character stays visible).
        raise UnreadableEvent(
            f"rule name {rule!r} is not an EventBridge rule name (ASCII letters, digits, . - _)"
        )
    job = rule_jobs.get(rule, rule.lower())
    try:
        check_job(job)
    except UnreadableEvent as exc:
        raise UnreadableEvent(f"rule {rule!r} maps to {job!r}: {exc}; map it to a job in RULE_JOBS") from None
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
