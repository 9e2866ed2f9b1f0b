"""Schedules as code: compare the registry's scheduled jobs with an EventBridge Scheduler group.

`plan` reads the group's schedules and says what `apply` would create, change and delete.
EventBridge Scheduler takes tags on schedule groups only, not on schedules
(https://docs.aws.amazon.com/scheduler/latest/APIReference/API_TagResource.html), so a schedule
is ours when its Description starts with MANAGED; only those are ever changed or deleted.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from service.errors import ConfigError
from service.schedules.expressions import EPOCH, Schedule

if TYPE_CHECKING:
    from mypy_boto3_scheduler import EventBridgeSchedulerClient

MANAGED = "managed-by=batch-trigger"
GROUP_TAG = ("managed-by", "batch-trigger")
#: As deploy/template.yaml's schedules: retry for a day (185 attempts is the Scheduler's maximum).
RETRY_POLICY = {"MaximumRetryAttempts": 185, "MaximumEventAgeInSeconds": 86400}
#: The Lambda's direct payload; the Scheduler fills in the placeholders when it fires.
SLOT = "<aws.scheduler.scheduled-time>"
EVENT_ID = "<aws.scheduler.execution-id>"


@dataclass(frozen=True)
class Target:
    """Where every schedule sends its firing: the trigger function, as the invoke role."""

    function_arn: str
    role_arn: str
    dead_letter_arn: str | None = None

    @classmethod
    def resolve(
        cls,
        function_arn: str | None = None,
        role_arn: str | None = None,
        dead_letter_arn: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Target:
        """Flags first, then the environment (the SAM stack's outputs under these names)."""
        env = os.environ if environ is None else environ
        function = function_arn or env.get("TRIGGER_FUNCTION_ARN", "")
        role = role_arn or env.get("SCHEDULER_ROLE_ARN", "")
        if not function.startswith("arn:") or not role.startswith("arn:"):
            raise ConfigError(
                "schedules need the trigger function's and the invoke role's ARNs: --function-arn and "
                "--role-arn, or TRIGGER_FUNCTION_ARN and SCHEDULER_ROLE_ARN (the stack's outputs)"
            )
        dead_letter = dead_letter_arn or env.get("SCHEDULE_DEAD_LETTER_ARN") or None
        return cls(function, role, dead_letter)


@dataclass(frozen=True)
class Change:
    """One schedule to create, update or delete, with what differs."""

    action: Literal["create", "update", "delete"]
    name: str
    body: dict[str, Any]
    diffs: tuple[tuple[str, str, str], ...] = ()


@dataclass
class Plan:
    """What apply would do to one group, and what it leaves alone."""

    group: str
    create_group: bool
    changes: list[Change] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        """True when the group already matches the registry."""
        return not self.create_group and not self.changes


def desired(
    scheduled: Iterable[tuple[str, Schedule]], target: Target, now: datetime
) -> dict[str, dict[str, Any]]:
    """The CreateSchedule request of every scheduled job, by schedule name (the job's name)."""
    bodies: dict[str, dict[str, Any]] = {}
    for job, schedule in scheduled:
        request: dict[str, Any] = {
            "Name": job,
            "Description": f"{MANAGED}; job={job}",
            "ScheduleExpression": schedule.aws_expression(),
            "ScheduleExpressionTimezone": schedule.zone_name,
            "FlexibleTimeWindow": {"Mode": "OFF"},
            "State": "ENABLED",
            "Target": {
                "Arn": target.function_arn,
                "RoleArn": target.role_arn,
                "Input": json.dumps({"job": job, "slot": SLOT, "event_id": EVENT_ID}),
                "RetryPolicy": dict(RETRY_POLICY),
            },
        }
        if target.dead_letter_arn:
            request["Target"]["DeadLetterConfig"] = {"Arn": target.dead_letter_arn}
        start = schedule.start_date(now)
        if start is not None:  # a rate counts from its StartDate: put it on the grid the watchdog knows
            request["StartDate"] = start
        bodies[job] = request
    return bodies


def read_group(client: EventBridgeSchedulerClient, group: str) -> dict[str, dict[str, Any]] | None:
    """Every schedule in the group, in full (GetSchedule); None when the group does not exist."""
    try:
        client.get_schedule_group(Name=group)
    except client.exceptions.ResourceNotFoundException:
        return None
    found: dict[str, dict[str, Any]] = {}
    for page in client.get_paginator("list_schedules").paginate(GroupName=group):
        for summary in page["Schedules"]:
            name = summary["Name"]
            found[name] = dict(client.get_schedule(GroupName=group, Name=name))
    return found


def plan(
    group: str, wanted: Mapping[str, dict[str, Any]], current: Mapping[str, dict[str, Any]] | None
) -> Plan:
    """Compare the wanted schedules with the group's (None: the group does not exist yet)."""
    result = Plan(group, create_group=current is None)
    existing = current or {}
    for name, body in sorted(wanted.items()):
        have = existing.get(name)
        if have is None:
            result.changes.append(Change("create", name, body))
        elif not _managed(have):
            result.notes.append(f"{name}: exists and is not managed by batch-trigger; left alone")
        else:
            diffs = _diff(_view(have), _view(body))
            if diffs:
                result.changes.append(Change("update", name, body, diffs))
    for name, have in sorted(existing.items()):
        if name in wanted:
            continue
        if _managed(have):
            result.changes.append(Change("delete", name, have))
        elif (job := _fired_job(have)) in wanted:
            result.notes.append(
                f"{name}: also fires job {job!r} and is not managed by batch-trigger (each slot runs once, "
                "but give the job one owner: see the template's ScheduleOwner)"
            )
    return result


def apply(client: EventBridgeSchedulerClient, result: Plan, now: datetime) -> None:
    """Make the group match: create it if need be, then each change in the plan's order."""
    group = result.group
    if result.create_group:
        client.create_schedule_group(Name=group, Tags=[{"Key": GROUP_TAG[0], "Value": GROUP_TAG[1]}])
    for change in result.changes:
        if change.action == "delete":
            client.delete_schedule(GroupName=group, Name=change.name)
        elif change.action == "create":
            client.create_schedule(GroupName=group, **change.body)
        else:
            client.update_schedule(GroupName=group, **change.body)


def render(result: Plan) -> str:
    """The plan as people read it, like `terraform plan`."""
    lines = [f"EventBridge Scheduler group {result.group!r}:"]
    if result.create_group:
        lines.append(f"  + create group {result.group} (tagged managed-by=batch-trigger)")
    marks = {"create": "+", "update": "~", "delete": "-"}
    for change in result.changes:
        lines.append(f"  {marks[change.action]} {change.action} {change.name}")
        if change.action == "create":
            lines += [f"      {key}: {value}" for key, value in _view(change.body).items()]
        elif change.action == "update":
            lines += [f"      {key}: {old} -> {new}" for key, old, new in change.diffs]
        else:
            lines.append(f"      expression: {change.body.get('ScheduleExpression')}")
    lines += [f"  ! {note}" for note in result.notes]
    if result.empty:
        lines.append("No changes: the schedules match the registry.")
    else:
        counts = {action: sum(c.action == action for c in result.changes) for action in marks}
        lines.append(
            f"Plan: {counts['create']} to create, {counts['update']} to update, {counts['delete']} to delete."
        )
    return "\n".join(lines)


def _managed(schedule: Mapping[str, Any]) -> bool:
    return str(schedule.get("Description") or "").startswith(MANAGED)


def _fired_job(schedule: Mapping[str, Any]) -> str | None:
    try:
        payload = json.loads(schedule.get("Target", {}).get("Input") or "{}")
    except ValueError:
        return None
    return payload.get("job") if isinstance(payload, dict) else None


def _view(schedule: Mapping[str, Any]) -> dict[str, str]:
    """The fields that decide how a schedule fires, as comparable text."""
    target = schedule.get("Target", {})
    retry = target.get("RetryPolicy") or {}
    try:
        payload = json.dumps(json.loads(target.get("Input") or "null"), sort_keys=True)
    except ValueError:
        payload = str(target.get("Input"))
    expression = str(schedule.get("ScheduleExpression"))
    return {
        "expression": expression,
        "timezone": str(schedule.get("ScheduleExpressionTimezone") or "UTC"),
        "input": payload,
        "target": str(target.get("Arn")),
        "role": str(target.get("RoleArn")),
        "retry": f"{retry.get('MaximumRetryAttempts')} attempts, "
        f"{retry.get('MaximumEventAgeInSeconds')}s",
        "dead_letter": str((target.get("DeadLetterConfig") or {}).get("Arn") or "-"),
        "window": str((schedule.get("FlexibleTimeWindow") or {}).get("Mode")),
        "state": str(schedule.get("State") or "ENABLED"),
        "start": _start(expression, schedule.get("StartDate")),
    }


def _start(expression: str, start: datetime | None) -> str:
    """A rate's StartDate only matters as a grid point; other schedules should have none."""
    if not expression.startswith("rate("):
        return "-" if start is None else start.isoformat()
    try:
        every = Schedule.parse(expression).every
    except ConfigError:
        return "-" if start is None else start.isoformat()
    if start is not None and every and (start - EPOCH) % every == timedelta(0):
        return f"on the {expression} grid from 1970-01-01T00:00Z"
    return "-" if start is None else f"{start.isoformat()} (off the grid)"


def _diff(have: dict[str, str], want: dict[str, str]) -> tuple[tuple[str, str, str], ...]:
    return tuple((key, have[key], want[key]) for key in want if have[key] != want[key])
