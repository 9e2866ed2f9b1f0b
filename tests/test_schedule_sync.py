"""`schedules plan` / `apply` against EventBridge Scheduler.

EventBridge Scheduler is emulated with moto (`mock_aws`): the AWS API cannot be reached from
the tests. Everything of ours runs for real: the expression parser, the plan, the boto3 calls.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from moto import mock_aws

from service.errors import ConfigError
from service.schedules import Schedule
from service.schedules.sync import MANAGED, Target, apply, desired, plan, read_group, render

GROUP = "batch-trigger"
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
TARGET = Target(
    "arn:aws:lambda:eu-west-1:123456789012:function:trigger",
    "arn:aws:iam::123456789012:role/scheduler-invoke",
    "arn:aws:sqs:eu-west-1:123456789012:failures",
)


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A boto3 `scheduler` client on moto's emulation, with no real credentials anywhere."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        yield boto3.client("scheduler", region_name="eu-west-1")


def jobs(**schedules: tuple[str, str]) -> dict[str, dict[str, Any]]:
    """The wanted schedules for jobs given as name=(expression, zone)."""
    return desired(((n, Schedule.parse(e, z)) for n, (e, z) in schedules.items()), TARGET, NOW)


def sync(client: Any, wanted: dict[str, dict[str, Any]]) -> str:
    """Plan and apply; the rendered plan."""
    result = plan(GROUP, wanted, read_group(client, GROUP))
    apply(client, result, NOW)
    return render(result)


def test_it_creates_the_group_and_the_missing_schedules(client: Any) -> None:
    wanted = jobs(daily=("0 0 * * *", "Europe/London"), reports=("cron(30 6 ? * MON-FRI *)", "Asia/Tokyo"))
    text = sync(client, wanted)
    assert "+ create group batch-trigger" in text and "Plan: 2 to create, 0 to update, 0 to delete." in text
    daily = client.get_schedule(GroupName=GROUP, Name="daily")
    assert daily["ScheduleExpression"] == "cron(0 0 * * ? *)"
    assert daily["ScheduleExpressionTimezone"] == "Europe/London"
    assert daily["FlexibleTimeWindow"] == {"Mode": "OFF"}
    assert daily["Description"].startswith(MANAGED)
    target = daily["Target"]
    assert (target["Arn"], target["RoleArn"]) == (TARGET.function_arn, TARGET.role_arn)
    assert json.loads(target["Input"]) == {
        "job": "daily",
        "slot": "<aws.scheduler.scheduled-time>",
        "event_id": "<aws.scheduler.execution-id>",
    }
    assert target["RetryPolicy"] == {"MaximumRetryAttempts": 185, "MaximumEventAgeInSeconds": 86400}
    assert target["DeadLetterConfig"] == {"Arn": TARGET.dead_letter_arn}
    tags = client.list_tags_for_resource(ResourceArn=client.get_schedule_group(Name=GROUP)["Arn"])["Tags"]
    assert {"Key": "managed-by", "Value": "batch-trigger"} in tags


def test_it_plans_nothing_after_apply(client: Any) -> None:
    wanted = jobs(
        daily=("0 0 * * *", "UTC"), pulse=("rate(15 minutes)", "UTC"), once=("at(2027-01-01T09:00:00)", "UTC")
    )
    sync(client, wanted)
    again = plan(GROUP, wanted, read_group(client, GROUP))
    assert again.empty and "No changes" in render(again)
    pulse = client.get_schedule(GroupName=GROUP, Name="pulse")
    # a rate counts from its StartDate: the first 15-minute grid point from now
    assert pulse["StartDate"] == NOW
    # an hour later, the StartDate computed then is another grid point: still no change
    later = desired([("pulse", Schedule.parse("rate(15 minutes)"))], TARGET, NOW + timedelta(minutes=61))
    assert plan(GROUP, later, {"pulse": pulse}).empty


@pytest.mark.parametrize(
    ("change", "field", "new"),
    [
        (("0 6 * * *", "UTC"), "expression", "cron(0 6 * * ? *)"),
        (("0 0 * * *", "America/New_York"), "timezone", "America/New_York"),
    ],
)
def test_it_updates_a_changed_expression_or_zone(
    client: Any, change: tuple[str, str], field: str, new: str
) -> None:
    sync(client, jobs(daily=("0 0 * * *", "UTC")))
    text = sync(client, jobs(daily=change))
    assert "~ update daily" in text and f"{field}: " in text and new in text
    assert "Plan: 0 to create, 1 to update, 0 to delete." in text
    daily = client.get_schedule(GroupName=GROUP, Name="daily")
    assert new in (daily["ScheduleExpression"], daily["ScheduleExpressionTimezone"])
    assert plan(GROUP, jobs(daily=change), read_group(client, GROUP)).empty


def test_it_restores_an_input_edited_by_hand(client: Any) -> None:
    wanted = jobs(daily=("0 0 * * *", "UTC"))
    sync(client, wanted)
    edited = dict(wanted["daily"])
    edited["Target"] = dict(edited["Target"], Input=json.dumps({"job": "monthly", "slot": "x"}))
    client.update_schedule(GroupName=GROUP, **edited)
    text = sync(client, wanted)
    assert "~ update daily" in text and "input: " in text
    assert json.loads(client.get_schedule(GroupName=GROUP, Name="daily")["Target"]["Input"])["job"] == "daily"


def test_it_deletes_only_its_own_stale_schedules(client: Any) -> None:
    sync(client, jobs(daily=("0 0 * * *", "UTC"), retired=("0 3 * * *", "UTC")))
    foreign = {
        "FlexibleTimeWindow": {"Mode": "OFF"},
        "ScheduleExpression": "cron(0 0 * * ? *)",
        "Target": {"Arn": TARGET.function_arn, "RoleArn": TARGET.role_arn, "Input": '{"job": "daily"}'},
    }
    client.create_schedule(GroupName=GROUP, Name="Daily", Description="batch-trigger daily job", **foreign)
    client.create_schedule(Name="retired", Description=f"{MANAGED}; job=retired", **foreign)  # default group
    text = sync(client, jobs(daily=("0 0 * * *", "UTC")))
    assert "- delete retired" in text and "Plan: 0 to create, 0 to update, 1 to delete." in text
    assert "! Daily: also fires job 'daily' and is not managed by batch-trigger" in text
    left = {s["Name"] for s in client.list_schedules(GroupName=GROUP)["Schedules"]}
    assert left == {"daily", "Daily"}
    assert client.get_schedule(Name="retired")["Name"] == "retired"  # another group: never touched


def test_it_leaves_alone_an_unmanaged_schedule_named_like_a_job(client: Any) -> None:
    client.create_schedule_group(Name=GROUP)
    client.create_schedule(
        GroupName=GROUP,
        Name="daily",
        FlexibleTimeWindow={"Mode": "OFF"},
        ScheduleExpression="cron(0 1 * * ? *)",
        Target={"Arn": TARGET.function_arn, "RoleArn": TARGET.role_arn},
    )
    result = plan(GROUP, jobs(daily=("0 0 * * *", "UTC")), read_group(client, GROUP))
    assert result.empty and result.notes == ["daily: exists and is not managed by batch-trigger; left alone"]


def test_it_reads_the_target_from_flags_or_the_environment() -> None:
    env = {
        "TRIGGER_FUNCTION_ARN": TARGET.function_arn,
        "SCHEDULER_ROLE_ARN": TARGET.role_arn,
        "SCHEDULE_DEAD_LETTER_ARN": "",
    }
    assert Target.resolve(environ=env) == Target(TARGET.function_arn, TARGET.role_arn)
    assert Target.resolve(role_arn="arn:aws:iam::1:role/x", environ=env).role_arn == "arn:aws:iam::1:role/x"
    with pytest.raises(ConfigError, match="--function-arn"):
        Target.resolve(environ={})
