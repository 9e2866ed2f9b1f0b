"""Reading an Auto Scaling lifecycle notification, as EventBridge or SNS delivers it.

EventBridge sends the event itself (`detail-type` "EC2 Instance-terminate Lifecycle Action",
the fields in `detail`); SNS wraps the notification as a JSON string in
`Records[0].Sns.Message`. Both carry the same field names:
https://docs.aws.amazon.com/autoscaling/ec2/userguide/prepare-for-lifecycle-notifications.html
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lambda_trigger.events import UnreadableEvent

TERMINATING = "autoscaling:EC2_INSTANCE_TERMINATING"
TEST_NOTIFICATION = "autoscaling:TEST_NOTIFICATION"  # sent once when a hook's SNS target is set up
TERMINATE_DETAIL_TYPE = "EC2 Instance-terminate Lifecycle Action"


@dataclass(frozen=True)
class LifecycleAction:
    """One instance waiting in Terminating:Wait for this hook's decision."""

    group: str
    hook: str
    instance_id: str
    token: str | None = None  # LifecycleActionToken; the instance id alone also identifies it


@dataclass(frozen=True)
class Ignored:
    """A notification with nothing to do: a test notification, another transition."""

    reason: str


def read_notification(event: object) -> LifecycleAction | Ignored:
    """Turn an EventBridge event or an SNS-delivered notification into the action to complete."""
    if not isinstance(event, Mapping):
        raise UnreadableEvent(f"expected a JSON object, got {type(event).__name__}")
    if "Records" in event:
        return _fields(_sns_message(event))
    if "detail-type" in event:
        if event["detail-type"] != TERMINATE_DETAIL_TYPE:
            return Ignored(f"detail-type {event['detail-type']!r} is not {TERMINATE_DETAIL_TYPE!r}")
        detail = event.get("detail")
        if not isinstance(detail, Mapping):
            raise UnreadableEvent("the event's 'detail' must be an object")
        return _fields(detail)
    raise UnreadableEvent("neither an EventBridge lifecycle event (no 'detail-type') nor SNS ('Records')")


def _sns_message(event: Mapping[str, Any]) -> Mapping[str, Any]:
    records = event["Records"]
    if not isinstance(records, list) or len(records) != 1 or not isinstance(records[0], Mapping):
        raise UnreadableEvent("an SNS delivery to Lambda has exactly one record")
    sns = records[0].get("Sns")
    message = sns.get("Message") if isinstance(sns, Mapping) else None
    if not isinstance(message, str):
        raise UnreadableEvent("the SNS record has no 'Sns.Message' string")
    try:
        parsed = json.loads(message)
    except json.JSONDecodeError as exc:
        raise UnreadableEvent(f"the SNS message is not JSON: {exc.msg}") from None
    if not isinstance(parsed, Mapping):
        raise UnreadableEvent("the SNS message must be a JSON object")
    return parsed


def _fields(notification: Mapping[str, Any]) -> LifecycleAction | Ignored:
    if notification.get("Event") == TEST_NOTIFICATION:
        return Ignored(f"{TEST_NOTIFICATION} for {notification.get('AutoScalingGroupName', '?')}")
    transition = notification.get("LifecycleTransition")
    if transition != TERMINATING:
        return Ignored(f"transition {transition!r} is not {TERMINATING}")
    values = {}
    for name in ("AutoScalingGroupName", "LifecycleHookName", "EC2InstanceId"):
        value = notification.get(name)
        if not isinstance(value, str) or not value:
            raise UnreadableEvent(f"the lifecycle notification has no {name}")
        values[name] = value
    token = notification.get("LifecycleActionToken")
    return LifecycleAction(
        values["AutoScalingGroupName"],
        values["LifecycleHookName"],
        values["EC2InstanceId"],
        token if isinstance(token, str) and token else None,
    )
