"""The scale-in lifecycle hook: drain the terminating instance, wait for its batches, release it.

The instance is a real service (gunicorn on 127.0.0.2) running real batches. EC2, ELB and
Auto Scaling are moto's emulation (`mock_aws`), since a test cannot reach AWS; moto does not
emulate CompleteLifecycleAction or RecordLifecycleActionHeartbeat, so those two calls are
answered and recorded, with the time they were made, at botocore's `before-call` event
(`tests/lambda_support/fleet.py`). The tokens the hook sends are read back from a recording
proxy in front of the instance and decoded, so their claims are pinned here, whatever the service
checks.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import jwt
import pytest

from lambda_trigger import lifecycle
from lambda_trigger.events import UnreadableEvent
from lambda_trigger.lifecycle_events import Ignored, LifecycleAction, read_notification
from service.cli import client
from service.dev.devserver import free_port
from tests.lambda_support.fleet import Aws, emulated_aws, on_address
from tests.lambda_support.lambda_env import REPO, Context, configure
from tests.lambda_support.proxy import FaultProxy
from tests.support.live import LiveService
from tests.support.slack import SlackReceiver

SECRET = "lifecycle-fleet-secret-0123456789abcdef0123456789"
ADDRESS = "127.0.0.2"
GROUP, HOOK = "web", "drain-batches"
GROUP_ARN = f"arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:1a2b:autoScalingGroupName/{GROUP}"
COMPLETE, HEARTBEAT = "CompleteLifecycleAction", "RecordLifecycleActionHeartbeat"


def eventbridge(instance_id: str, token: str) -> dict[str, Any]:
    """The event EventBridge delivers for a terminate lifecycle action (AWS's documented shape)."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "EC2 Instance-terminate Lifecycle Action",
        "source": "aws.autoscaling",
        "account": "123456789012",
        "time": "2026-11-23T03:00:00Z",
        "region": "us-east-1",
        "resources": [GROUP_ARN],
        "detail": {
            "LifecycleActionToken": token,
            "AutoScalingGroupName": GROUP,
            "LifecycleHookName": HOOK,
            "EC2InstanceId": instance_id,
            "LifecycleTransition": "autoscaling:EC2_INSTANCE_TERMINATING",
            "Origin": "AutoScalingGroup",
            "Destination": "EC2",
        },
    }


def sns(message: dict[str, Any]) -> dict[str, Any]:
    """An SNS delivery to Lambda: the notification as a JSON string in Records[0].Sns.Message."""
    return {
        "Records": [
            {
                "EventSource": "aws:sns",
                "EventVersion": "1.0",
                "EventSubscriptionArn": "arn:aws:sns:us-east-1:123456789012:scale-in:0f1e2d3c",
                "Sns": {
                    "Type": "Notification",
                    "MessageId": str(uuid.uuid4()),
                    "TopicArn": "arn:aws:sns:us-east-1:123456789012:scale-in",
                    "Subject": "Auto Scaling:  Lifecycle action 'TERMINATING'",
                    "Message": json.dumps(message),
                    "Timestamp": "2026-11-23T03:00:00.000Z",
                },
            }
        ]
    }


def terminating(instance_id: str, token: str) -> dict[str, Any]:
    """The lifecycle notification Auto Scaling sends to SNS (AWS's documented fields)."""
    return {
        "Origin": "AutoScalingGroup",
        "LifecycleHookName": HOOK,
        "Destination": "EC2",
        "AccountId": "123456789012",
        "RequestId": str(uuid.uuid4()),
        "LifecycleTransition": "autoscaling:EC2_INSTANCE_TERMINATING",
        "AutoScalingGroupName": GROUP,
        "Service": "AWS Auto Scaling",
        "Time": "2026-11-23T03:00:00.000Z",
        "EC2InstanceId": instance_id,
        "LifecycleActionToken": token,
    }


TEST_NOTIFICATION = {
    "AccountId": "123456789012",
    "RequestId": "5c1f8e5a-3a6b-4d2c-9e0f-7a8b9c0d1e2f",
    "AutoScalingGroupARN": GROUP_ARN,
    "AutoScalingGroupName": GROUP,
    "Service": "AWS Auto Scaling",
    "Event": "autoscaling:TEST_NOTIFICATION",
    "Time": "2026-11-23T03:00:00.000Z",
}


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[LiveService]:
    """One instance on its own loopback address (each test drains it)."""
    service = LiveService(tmp_path, workers=2, INSTANCE_ID="web-a", TRIGGER_SECRET=SECRET)
    with on_address(service, ADDRESS):
        yield service


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Aws]:
    """Emulated AWS with the Auto Scaling group and its terminate hook."""
    with emulated_aws(monkeypatch) as emulated:
        emulated.group(GROUP, [])
        emulated.autoscaling.put_lifecycle_hook(
            LifecycleHookName=HOOK,
            AutoScalingGroupName=GROUP,
            LifecycleTransition="autoscaling:EC2_INSTANCE_TERMINATING",
            HeartbeatTimeout=300,
            DefaultResult="CONTINUE",
        )
        yield emulated


def lambda_for(monkeypatch: pytest.MonkeyPatch, slack: SlackReceiver, **env: str) -> None:
    """A fresh container of the lifecycle function with short intervals for tests."""
    configure(
        monkeypatch,
        APP_URL="http://127.0.0.1:9",  # unused: the hook talks to the instance itself
        TRIGGER_SECRET=SECRET,
        SLACK_WEBHOOK_URL=slack.url,
        LIFECYCLE_HEARTBEAT_SECONDS="0.5",
        LIFECYCLE_POLL_SECONDS="0.1",
        INSTANCE_REACH_SECONDS="1",
        **env,
    )
    monkeypatch.setattr(lifecycle, "_releaser", None)


def registered(aws: Aws, service: LiveService) -> tuple[str, str]:
    """An EC2 instance at the service's address in an instance target group: its id, the group's ARN."""
    instance_id = aws.instance(ADDRESS)
    arn = aws.target_group("instance")
    aws.register(arn, [(instance_id, service.port)])
    return instance_id, arn


def start_slow_batch(service: LiveService, seconds: float) -> str:
    """Start the `slow` job on the instance and wait until its batch runs there; its run id."""
    run_id = str(service.post("slow", service.mint("slow", params={"seconds": seconds})).body["id"])
    for _ in range(200):
        if service.get("/v1/instance").body["running"] == [run_id]:
            return run_id
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} never ran")


def claims_of(authorization: str) -> dict[str, Any]:
    """The verified claims of a bearer token the hook sent."""
    token = authorization.removeprefix("Bearer ")
    claims: dict[str, Any] = jwt.decode(token, SECRET, algorithms=["HS256"], audience="batch-trigger")
    return claims


def at(text: str) -> float:
    """An RFC 3339 time from the service as a POSIX timestamp."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_it_holds_a_busy_instance_until_its_batch_finishes(
    monkeypatch: pytest.MonkeyPatch, instance: LiveService, aws: Aws, slack: SlackReceiver
) -> None:
    (instance_id, arn), token = registered(aws, instance), str(uuid.uuid4())
    lambda_for(monkeypatch, slack, TARGET_GROUP_ARN=arn, AUTOSCALING_GROUP_NAME=GROUP)
    run_id = start_slow_batch(instance, seconds=3)
    result = lifecycle.handler(eventbridge(instance_id, token), Context(remaining_seconds=60))
    (completed, completed_at), *more = aws.lifecycle.named(COMPLETE)
    assert more == []
    assert completed == {
        "LifecycleHookName": HOOK,
        "AutoScalingGroupName": GROUP,
        "InstanceId": instance_id,
        "LifecycleActionToken": token,
        "LifecycleActionResult": "CONTINUE",
    }
    run = instance.wait_final(run_id)
    assert run["status"] == "succeeded" and at(run["finished_at"]) <= completed_at
    beats = aws.lifecycle.named(HEARTBEAT)
    assert beats and all(at_ < completed_at for _, at_ in beats)
    assert beats[0][0]["InstanceId"] == instance_id and beats[0][0]["LifecycleActionToken"] == token
    assert result | {"waited_seconds": 0} == {
        "instance_id": instance_id,
        "group": GROUP,
        "address": f"{ADDRESS}:{instance.port}",
        "outcome": "released",
        "instance": "web-a",
        "running": [],
        "heartbeats": len(beats),
        "waited_seconds": 0,
        "completed": True,
        "result": "CONTINUE",
    }
    # Drained: no new claims on it while Auto Scaling terminates it.
    assert client.request("GET", f"{instance.url}/readyz").status == 503
    assert instance.post("count", instance.mint("count")).body["error"] == "draining"


def test_it_drains_with_single_use_tokens_naming_that_instance(
    monkeypatch: pytest.MonkeyPatch, instance: LiveService, aws: Aws, slack: SlackReceiver
) -> None:
    # A proxy in front of the instance records every request the hook sends it: EC2 places the
    # terminating instance at the proxy's address and INSTANCE_PORT is the proxy's port.
    with FaultProxy(instance.url) as proxy:
        instance_id = aws.instance("127.0.0.1")
        lambda_for(monkeypatch, slack, INSTANCE_PORT=str(proxy.port), TOKEN_LIFETIME_SECONDS="300")
        # Long enough to outlast the EC2 look-up and the drain on a busy machine: the hook must poll.
        run_id = start_slow_batch(instance, seconds=4)
        result = lifecycle.handler(eventbridge(instance_id, str(uuid.uuid4())), Context(remaining_seconds=60))
    assert (result["outcome"], result["instance"], result["completed"]) == ("released", "web-a", True)
    assert instance.wait_final(run_id)["status"] == "succeeded"
    sent = [(seen.method, seen.path, claims_of(seen.headers["Authorization"])) for seen in proxy.seen]
    (ask, ask_claims), (drain, drain_claims), *polls = [(f"{m} {p}", c) for m, p, c in sent]
    # First it asks the instance its INSTANCE_ID (the service's name for it, not the EC2 id).
    assert (ask, ask_claims["sub"]) == ("GET /v1/instance", "read")
    assert drain == "POST /v1/instance/drain"
    assert {k: drain_claims[k] for k in ("iss", "aud", "sub", "instance")} == {
        "iss": "lambda",
        "aud": "batch-trigger",
        "sub": "drain",
        "instance": "web-a",
    }
    assert 0 < drain_claims["exp"] - drain_claims["iat"] <= 60
    # While it waits, it reads that one instance with drain tokens of the same instance.
    assert polls and {(what, c["sub"], c["instance"]) for what, c in polls} == {
        ("GET /v1/instance", "drain", "web-a")
    }
    jtis = [claims["jti"] for _, _, claims in sent]
    assert len(set(jtis)) == len(jtis)  # each token is used once


def test_it_releases_an_idle_instance_at_once(
    monkeypatch: pytest.MonkeyPatch, instance: LiveService, aws: Aws, slack: SlackReceiver
) -> None:
    # No target group: the address is EC2's private IP and INSTANCE_PORT.
    instance_id, token = aws.instance(ADDRESS), str(uuid.uuid4())
    lambda_for(monkeypatch, slack, INSTANCE_PORT=str(instance.port))
    result = lifecycle.handler(sns(terminating(instance_id, token)), Context())
    assert (result["outcome"], result["running"], result["heartbeats"], result["completed"]) == (
        "released",
        [],
        0,
        True,
    )
    assert [body["InstanceId"] for body, _ in aws.lifecycle.named(COMPLETE)] == [instance_id]
    assert aws.lifecycle.named(HEARTBEAT) == []
    assert instance.get("/v1/instance").body == {"instance": "web-a", "draining": True, "running": []}


def test_it_alerts_and_releases_when_the_wait_limit_is_reached(
    monkeypatch: pytest.MonkeyPatch, instance: LiveService, aws: Aws, slack: SlackReceiver
) -> None:
    instance_id = aws.instance(ADDRESS)
    lambda_for(monkeypatch, slack, INSTANCE_PORT=str(instance.port), LIFECYCLE_MAX_WAIT_SECONDS="0.3")
    run_id = start_slow_batch(instance, seconds=3)
    before = len(slack.messages)
    result = lifecycle.handler(eventbridge(instance_id, str(uuid.uuid4())), Context())
    assert (result["outcome"], result["running"], result["completed"]) == ("limit reached", [run_id], True)
    alert = slack.wait_for(before + 1)[before]["text"]
    assert "scale-in: web-a released with batches still running" in alert
    assert instance_id in alert and run_id in alert
    assert len(aws.lifecycle.named(COMPLETE)) == 1


def test_it_releases_an_instance_that_is_already_gone(
    monkeypatch: pytest.MonkeyPatch, aws: Aws, slack: SlackReceiver
) -> None:
    # Nothing listens on its address any more; and another one EC2 no longer knows at all.
    stopped = aws.instance("127.0.0.4")
    lambda_for(monkeypatch, slack, INSTANCE_PORT=str(free_port()))
    result = lifecycle.handler(eventbridge(stopped, str(uuid.uuid4())), Context())
    assert (result["outcome"], result["completed"]) == ("unreachable", True)
    unknown = "i-0123456789abcdef0"
    forgotten = lifecycle.handler(eventbridge(unknown, str(uuid.uuid4())), Context())
    assert (forgotten["outcome"], forgotten["completed"]) == ("gone", True)
    assert [body["InstanceId"] for body, _ in aws.lifecycle.named(COMPLETE)] == [stopped, unknown]


def test_it_warns_when_the_action_is_no_longer_pending(
    monkeypatch: pytest.MonkeyPatch, aws: Aws, slack: SlackReceiver
) -> None:
    # The hook's heartbeat timeout ran out before the handler completed the action.
    gone = "i-0fedcba9876543210"
    aws.lifecycle.refusal = f"No active Lifecycle Action found with instance ID {gone}"
    lambda_for(monkeypatch, slack, INSTANCE_PORT="8000")
    before = len(slack.messages)
    result = lifecycle.handler(eventbridge(gone, str(uuid.uuid4())), Context())
    assert (result["outcome"], result["completed"]) == ("gone", False)
    alert = slack.wait_for(before + 1)[before]["text"]
    assert f"lifecycle action of {gone} no longer pending" in alert and "No active Lifecycle Action" in alert


def test_it_ignores_the_test_notification_without_asking_aws() -> None:
    # A clean interpreter: if the handler asked AWS anything, boto3 would be imported.
    probe = (
        "import json, sys\n"
        "from lambda_trigger.lifecycle import handler\n"
        "print(json.dumps([handler(json.loads(sys.argv[1]), None), 'boto3' in sys.modules]))\n"
    )
    env = {"PYTHONPATH": str(REPO), "APP_URL": "http://127.0.0.1:9", "TRIGGER_SECRET": SECRET}
    done = subprocess.run(
        [sys.executable, "-c", probe, json.dumps(sns(TEST_NOTIFICATION))],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result, imported = json.loads(done.stdout)
    assert result == {"ignored": True, "reason": "autoscaling:TEST_NOTIFICATION for web"}
    assert imported is False


def test_it_reads_the_eventbridge_and_the_sns_shapes_alike() -> None:
    token = str(uuid.uuid4())
    expected = LifecycleAction(GROUP, HOOK, "i-0abc", token)
    assert read_notification(eventbridge("i-0abc", token)) == expected
    assert read_notification(sns(terminating("i-0abc", token))) == expected
    launching = terminating("i-0abc", token) | {"LifecycleTransition": "autoscaling:EC2_INSTANCE_LAUNCHING"}
    assert isinstance(read_notification(sns(launching)), Ignored)
    anonymous = {k: v for k, v in terminating("i-0abc", token).items() if k != "EC2InstanceId"}
    with pytest.raises(UnreadableEvent, match="no EC2InstanceId"):
        read_notification(sns(anonymous))
    with pytest.raises(UnreadableEvent, match="not JSON"):
        read_notification({"Records": [{"Sns": {"Message": "{"}}]})
