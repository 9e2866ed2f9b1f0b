"""Broadcast jobs: the real handler posts to each target of a target group and proves coverage.

The HTTP goes to three real service instances (gunicorn on 127.0.0.1, .2 and .3, one shared
SQLite ledger). The AWS APIs the Lambda asks — ELB target health, Auto Scaling, EC2 — are
moto's emulation (`mock_aws`), because those calls cannot reach AWS from a test; moto reports
every registered target `healthy` (it runs no health checks) unless it is a stopped instance.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest

from lambda_trigger import BroadcastIncomplete, ConfigurationError, Settings
from lambda_trigger.handler import handler
from tests.lambda_support.fleet import Aws, emulated_aws, on_address
from tests.lambda_support.lambda_env import Context, configure
from tests.support.live import LiveService, format_slot, unique_slot
from tests.support.slack import SlackReceiver

SECRET = "broadcast-fleet-secret-0123456789abcdef0123456789"
ADDRESSES = {"web-1": "127.0.0.1", "web-2": "127.0.0.2", "web-3": "127.0.0.3"}
NOWHERE = "http://127.0.0.1:9"  # APP_URL: a broadcast never goes through the load balancer


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, LiveService]]:
    """Three instances, each on its own loopback address, sharing one ledger and one secret."""
    work = tmp_path_factory.mktemp("fleet")
    shared = {"LEDGER_URL": f"sqlite:///{work / 'ledger.db'}", "TRIGGER_SECRET": SECRET}
    services = {
        name: on_address(LiveService(work / name, workers=2, INSTANCE_ID=name, **shared), address)
        for name, address in ADDRESSES.items()
    }
    with ExitStack() as stack:
        for service in services.values():
            stack.enter_context(service)
        yield services


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Aws]:
    """A fresh emulated AWS account for each test."""
    with emulated_aws(monkeypatch) as emulated:
        yield emulated


def lambda_for(monkeypatch: pytest.MonkeyPatch, slack: SlackReceiver, target_group: str, **env: str) -> None:
    """A fresh Lambda container that broadcasts `local-cache` (unless `env` says otherwise)."""
    env = {"BROADCAST_JOBS": "local-cache, other-cache", "TARGET_GROUP_ARN": target_group} | env
    configure(monkeypatch, APP_URL=NOWHERE, TRIGGER_SECRET=SECRET, SLACK_WEBHOOK_URL=slack.url, **env)


def ip_targets(aws: Aws, fleet: dict[str, LiveService]) -> str:
    """A target group of type ip with every instance registered by address and port."""
    arn = aws.target_group("ip")
    aws.register(arn, [(ADDRESSES[name], service.port) for name, service in fleet.items()])
    return arn


def instance_targets(aws: Aws, fleet: dict[str, LiveService]) -> tuple[str, dict[str, str]]:
    """A target group of type instance: an EC2 instance per service, at its address; the ids."""
    arn = aws.target_group("instance")
    ids = {name: aws.instance(ADDRESSES[name]) for name in fleet}
    aws.register(arn, [(ids[name], service.port) for name, service in fleet.items()])
    return arn, ids


def executions(service: LiveService, slot: str) -> int:
    """How many times `local-cache` ran on this instance for `slot`."""
    return sum(f" {slot[:-1]}" in line for line in service.executions("local-cache"))


def coverage(service: LiveService, slot: str) -> dict[str, Any]:
    """The service's own account of which instances ran the slot."""
    found: dict[str, Any] = service.get(f"/v1/runs?job=local-cache&slot={slot}").body["coverage"]
    return found


def test_it_runs_a_broadcast_job_once_on_each_of_three_instances(
    monkeypatch: pytest.MonkeyPatch, fleet: dict[str, LiveService], aws: Aws, slack: SlackReceiver
) -> None:
    arn = ip_targets(aws, fleet)
    health = aws.elbv2.describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"]
    assert sorted(d["TargetHealth"]["State"] for d in health) == ["healthy"] * 3
    lambda_for(monkeypatch, slack, arn)
    slot = format_slot(unique_slot())
    event = {"job": "local-cache", "slot": slot, "event_id": "broadcast-1"}
    result = handler(event, Context())
    assert (result["scope"], result["targets"], result["duplicates"]) == ("instance", 3, 0)
    assert sorted(result["runs"]) == sorted(fleet)
    for name, service in fleet.items():
        run = service.wait_final(result["runs"][name])
        assert (run["status"], run["target"], run["event_id"]) == ("succeeded", name, "broadcast-1")
    assert coverage(fleet["web-1"], slot) == {
        "instances": dict.fromkeys(sorted(fleet), "succeeded"),
        "count": 3,
        "succeeded": 3,
    }
    again = handler(event, Context())  # EventBridge and Lambda deliver at least once
    assert (again["runs"], again["duplicates"]) == (result["runs"], 3)
    assert [executions(service, slot) for service in fleet.values()] == [1, 1, 1]


@pytest.mark.parametrize("kind", ["ip", "instance"])
def test_it_reports_an_instance_that_is_down_by_name_and_raises(
    monkeypatch: pytest.MonkeyPatch, fleet: dict[str, LiveService], aws: Aws, slack: SlackReceiver, kind: str
) -> None:
    down = fleet["web-3"]
    if kind == "ip":
        # Stopped since the last health check: the target group still says healthy.
        arn, missing = ip_targets(aws, fleet), f"127.0.0.3:{down.port}: no answer"
    else:
        # A stopped EC2 instance: its target is "unused" (Target.InvalidState).
        arn, ids = instance_targets(aws, fleet)
        aws.ec2.stop_instances(InstanceIds=[ids["web-3"]])
        missing = f"{ids['web-3']} (127.0.0.3:{down.port}): not healthy (unused"
    lambda_for(monkeypatch, slack, arn, DEADLINE_SECONDS="2")
    slot = format_slot(unique_slot())
    before = len(slack.messages)
    down.stop()
    try:
        with pytest.raises(BroadcastIncomplete) as failed:
            handler({"job": "local-cache", "slot": slot}, Context())
    finally:
        down.start()
    alert = slack.wait_for(before + 1)[before]["text"]
    assert "broadcast of local-cache did not reach every instance" in alert
    assert missing in alert and missing in str(failed.value)
    assert "instances reached*: 2 of" in alert
    assert all(f"{name} at " in alert and f"{ADDRESSES[name]}:" in alert for name in ("web-1", "web-2"))
    assert sorted(coverage(fleet["web-1"], slot)["instances"]) == ["web-1", "web-2"]


def test_it_alerts_instead_of_succeeding_with_no_registered_targets(
    monkeypatch: pytest.MonkeyPatch, fleet: dict[str, LiveService], aws: Aws, slack: SlackReceiver
) -> None:
    lambda_for(monkeypatch, slack, aws.target_group("ip"))
    slot = format_slot(unique_slot())
    before = len(slack.messages)
    with pytest.raises(BroadcastIncomplete, match="no healthy target in the target group"):
        handler({"job": "local-cache", "slot": slot}, Context())
    alert = slack.wait_for(before + 1)[before]["text"]
    assert "no healthy target in the target group (none registered)" in alert
    assert coverage(fleet["web-1"], slot)["count"] == 0


def test_it_alerts_when_fewer_instances_ran_it_than_the_group_wants(
    monkeypatch: pytest.MonkeyPatch, fleet: dict[str, LiveService], aws: Aws, slack: SlackReceiver
) -> None:
    arn, ids = instance_targets(aws, fleet)
    aws.group("web", list(ids.values()))
    lambda_for(monkeypatch, slack, arn, AUTOSCALING_GROUP_NAME="web")
    covered = handler({"job": "local-cache", "slot": format_slot(unique_slot())}, Context())
    assert (covered["desired_capacity"], len(covered["runs"])) == (3, 3)
    # Scale-out: the group launches a fourth instance the target group does not list yet.
    aws.autoscaling.set_desired_capacity(AutoScalingGroupName="web", DesiredCapacity=4)
    (group,) = aws.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=["web"])[
        "AutoScalingGroups"
    ]
    (launched,) = {i["InstanceId"] for i in group["Instances"]} - set(ids.values())
    slot = format_slot(unique_slot())
    before = len(slack.messages)
    with pytest.raises(BroadcastIncomplete, match="wants 4"):
        handler({"job": "local-cache", "slot": slot}, Context())
    alert = slack.wait_for(before + 1)[before]["text"]
    assert f"3 instance(s) ran it; Auto Scaling group web wants 4; in service without a run: {launched}" in (
        alert
    )
    assert coverage(fleet["web-1"], slot)["count"] == 3  # the three it could reach did run it


def test_it_refuses_a_fleet_job_listed_as_a_broadcast(
    monkeypatch: pytest.MonkeyPatch, fleet: dict[str, LiveService], aws: Aws, slack: SlackReceiver
) -> None:
    lambda_for(monkeypatch, slack, ip_targets(aws, fleet), BROADCAST_JOBS="count")
    before = len(slack.messages)
    with pytest.raises(BroadcastIncomplete, match="is 'count' declared scope='instance'"):
        handler({"job": "count", "slot": format_slot(unique_slot())}, Context())
    assert "remove it from BROADCAST_JOBS" in slack.wait_for(before + 1)[before]["text"]


def test_it_warns_when_a_broadcast_job_goes_through_the_load_balancer(
    monkeypatch: pytest.MonkeyPatch, fleet: dict[str, LiveService], slack: SlackReceiver
) -> None:
    configure(monkeypatch, APP_URL=fleet["web-2"].url, TRIGGER_SECRET=SECRET, SLACK_WEBHOOK_URL=slack.url)
    before = len(slack.messages)
    result = handler({"job": "local-cache", "slot": format_slot(unique_slot())}, Context())
    assert result["run_id"] is not None  # it ran, on the one instance the request reached
    alert = slack.wait_for(before + 1)[before]["text"]
    assert "local-cache runs per instance, but only one instance was triggered" in alert
    assert "add it to BROADCAST_JOBS" in alert


def test_it_needs_a_target_group_for_broadcast_jobs() -> None:
    env = {"APP_URL": "https://app.internal/batch", "TRIGGER_SECRET": SECRET, "BROADCAST_JOBS": "local-cache"}
    with pytest.raises(ConfigurationError, match="BROADCAST_JOBS needs TARGET_GROUP_ARN"):
        Settings.from_env(env)
    arn = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123456789abcdef"
    fleet = Settings.from_env(env | {"TARGET_GROUP_ARN": arn}).fleet
    # Instances serve the API under APP_URL's path unless TARGET_PATH_PREFIX says otherwise.
    assert (fleet.broadcast_jobs, fleet.path_prefix, fleet.region) == ({"local-cache"}, "/batch", "us-east-1")
    with pytest.raises(ConfigurationError, match="BROADCAST_JOBS must list job names"):
        Settings.from_env(env | {"TARGET_GROUP_ARN": arn, "BROADCAST_JOBS": "Cache Clear"})
    with pytest.raises(ConfigurationError, match="reserved"):
        Settings.from_env(env | {"TARGET_GROUP_ARN": arn, "BROADCAST_JOBS": "local-cache, drain"})
    with pytest.raises(ConfigurationError, match="TARGET_PATH_PREFIX") as pasted:
        Settings.from_env(
            env | {"TARGET_GROUP_ARN": arn, "TARGET_PATH_PREFIX": "https://u:hunter2@web/b?k=1"}
        )
    assert "hunter2" not in str(pasted.value) and "k=1" not in str(pasted.value)
