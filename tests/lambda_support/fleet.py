"""A fleet for the Lambda's fan-out and lifecycle tests: real instances, AWS emulated by moto.

Each service instance is real gunicorn listening on its own loopback address (127.0.0.1,
127.0.0.2, ...), as each fleet member has its own private IP on AWS. Distinct addresses are
also what moto needs: its target group keeps one target per Id, so three targets
`127.0.0.1:port` would collapse into one. ELB, Auto Scaling and EC2 are moto's in-process
emulation (`mock_aws`) reached through real boto3 clients. moto does not emulate
CompleteLifecycleAction or RecordLifecycleActionHeartbeat, so `LifecycleCalls` answers those
two operations itself, at botocore's `before-call` event, and records them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from moto import mock_aws

from tests.support.live import LiveService

REGION = "us-east-1"
IMAGE = "ami-12c6146b"  # any id: moto launches "instances" from it without looking


def on_address(service: LiveService, address: str) -> LiveService:
    """Make a not yet started instance listen on `address` instead of 127.0.0.1."""
    service.env["BIND"] = f"{address}:{service.port}"
    service.url = f"http://{address}:{service.port}"
    return service


@dataclass
class LifecycleCalls:
    """CompleteLifecycleAction and RecordLifecycleActionHeartbeat calls, answered and recorded."""

    calls: list[tuple[str, dict[str, Any], float]] = field(default_factory=list)
    refusal: str | None = None  # when set, answer as AWS does for an action no longer pending

    def answer(self, model: Any, params: dict[str, Any], **_: Any) -> tuple[Any, dict[str, Any]]:
        """botocore `before-call` handler: record the call (with the wall-clock time) and succeed."""
        body = {k: v for k, v in params["body"].items() if k not in ("Action", "Version")}
        self.calls.append((model.name, body, time.time()))
        if self.refusal is not None:
            error = {"Code": "ValidationError", "Message": self.refusal, "Type": "Sender"}
            return _Answer(400), {"Error": error, "ResponseMetadata": {"HTTPStatusCode": 400}}
        return _Answer(200), {"ResponseMetadata": {"HTTPStatusCode": 200}}

    def named(self, operation: str) -> list[tuple[dict[str, Any], float]]:
        """The recorded calls of one operation: (parameters, time)."""
        return [(body, at) for name, body, at in self.calls if name == operation]


class _Answer:
    """The two things botocore reads from an HTTP response it did not send."""

    def __init__(self, status_code: int) -> None:
        self.status_code = status_code
        self.headers: dict[str, str] = {}


@dataclass
class Aws:
    """The emulated account: one VPC with a subnet on loopback addresses, and clients."""

    ec2: Any
    elbv2: Any
    autoscaling: Any
    lifecycle: LifecycleCalls
    vpc: str = ""
    subnet: str = ""

    def target_group(self, kind: str = "ip", port: int = 8000) -> str:
        """A new target group of target type `ip` or `instance`; its ARN."""
        name = f"tg-{kind}-{time.monotonic_ns() % 10**9}"
        created = self.elbv2.create_target_group(
            Name=name, Protocol="HTTP", Port=port, VpcId=self.vpc, TargetType=kind, HealthCheckPath="/readyz"
        )
        return str(created["TargetGroups"][0]["TargetGroupArn"])

    def instance(self, address: str) -> str:
        """An EC2 instance whose private IP is `address`; its id."""
        ran = self.ec2.run_instances(
            ImageId=IMAGE, MinCount=1, MaxCount=1, SubnetId=self.subnet, PrivateIpAddress=address
        )
        return str(ran["Instances"][0]["InstanceId"])

    def register(self, arn: str, targets: list[tuple[str, int]]) -> None:
        """Register (Id, port) targets."""
        self.elbv2.register_targets(TargetGroupArn=arn, Targets=[{"Id": i, "Port": p} for i, p in targets])

    def group(self, name: str, instances: list[str], desired: int | None = None) -> None:
        """An Auto Scaling group holding `instances`; more are launched (elsewhere) up to `desired`."""
        self.autoscaling.create_launch_configuration(
            LaunchConfigurationName=name, ImageId=IMAGE, InstanceType="t3.micro"
        )
        # Launched instances go to a subnet of their own: their addresses are never the fleet's.
        spare = self.ec2.create_subnet(VpcId=self.vpc, CidrBlock="127.0.200.0/24")["Subnet"]["SubnetId"]
        self.autoscaling.create_auto_scaling_group(
            AutoScalingGroupName=name,
            LaunchConfigurationName=name,
            MinSize=0,
            MaxSize=10,
            DesiredCapacity=0,
            VPCZoneIdentifier=spare,
        )
        if instances:
            self.autoscaling.attach_instances(AutoScalingGroupName=name, InstanceIds=instances)
        if desired is not None:
            self.autoscaling.set_desired_capacity(AutoScalingGroupName=name, DesiredCapacity=desired)


@contextmanager
def emulated_aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Aws]:
    """moto for every boto3 client, including the Lambda's own; lifecycle calls recorded."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    lifecycle = LifecycleCalls()
    with mock_aws():
        boto3.setup_default_session()  # a fresh default session, so the hooks below are ours alone
        events = boto3.DEFAULT_SESSION.events  # type: ignore[union-attr]
        for operation in ("CompleteLifecycleAction", "RecordLifecycleActionHeartbeat"):
            events.register(f"before-call.auto-scaling.{operation}", lifecycle.answer)
        aws = Aws(boto3.client("ec2"), boto3.client("elbv2"), boto3.client("autoscaling"), lifecycle)
        aws.vpc = aws.ec2.create_vpc(CidrBlock="127.0.0.0/16")["Vpc"]["VpcId"]
        aws.subnet = aws.ec2.create_subnet(VpcId=aws.vpc, CidrBlock="127.0.0.0/24")["Subnet"]["SubnetId"]
        try:
            yield aws
        finally:
            boto3.DEFAULT_SESSION = None
