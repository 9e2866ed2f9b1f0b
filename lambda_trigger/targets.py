"""The fleet as AWS sees it: target group health, the Auto Scaling group, instance addresses.

boto3 is imported on first use only, so a trigger of an ordinary job never pays for it; the
clients are built once per container and reused while it is warm.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lambda_trigger.lifecycle_events import LifecycleAction
from lambda_trigger.settings import ConfigurationError, FleetSettings

if TYPE_CHECKING:
    from mypy_boto3_autoscaling import AutoScalingClient
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_elbv2 import ElasticLoadBalancingv2Client

log = logging.getLogger(__name__)

HEALTHY = "healthy"
# "unused" for these reasons means deregistered or deregistering: on its way out of the fleet.
# For others (Target.InvalidState: a stopped instance; Target.NotInUse) it is a member that is down.
_DEREGISTERED = frozenset({"Target.NotRegistered", "Target.DeregistrationInProgress"})


class FleetUnavailable(RuntimeError):
    """AWS could not answer about the fleet (permissions, throttling, network, a missing group)."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code  # the AWS error code, e.g. "ValidationError"; "" for transport errors


@dataclass(frozen=True)
class Target:
    """One registered target: its Id (an instance id or an IP), port, health and reachable address."""

    id: str
    port: int
    state: str = HEALTHY
    reason: str = ""
    address: str | None = None  # the IP: an ip target's Id, an instance target's private IP

    @property
    def leaving(self) -> bool:
        """Whether the target is being or has been deregistered (scale-in, deploy)."""
        return self.state == "draining" or (self.state == "unused" and self.reason in _DEREGISTERED)

    @property
    def name(self) -> str:
        """How alerts name it: `10.0.1.5:8000`, or `i-0abc (10.0.1.5:8000)` for an instance."""
        where = f"{self.address}:{self.port}" if self.address else f"port {self.port}, no address"
        return where if self.address == self.id else f"{self.id} ({where})"

    def url(self, settings: FleetSettings, path: str) -> str:
        """The URL of the service's `path` on this very instance, bypassing the load balancer."""
        if self.address is None:
            raise ValueError(f"target {self.id} has no address")
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{settings.scheme}://{host}:{self.port}{settings.path_prefix}{path}"


@dataclass(frozen=True)
class Group:
    """The Auto Scaling group: how many instances it wants and which it has."""

    name: str
    desired: int
    instances: dict[str, str] = field(default_factory=dict)  # instance id -> lifecycle state


class Fleet:
    """Asks ELB, Auto Scaling and EC2 about the instances behind `TARGET_GROUP_ARN`."""

    def __init__(self, settings: FleetSettings) -> None:
        self.settings = settings
        self._elbv2: ElasticLoadBalancingv2Client | None = None
        self._autoscaling: AutoScalingClient | None = None
        self._ec2: EC2Client | None = None

    def __repr__(self) -> str:
        return f"Fleet(target_group={self.settings.target_group_arn!r})"

    def targets(self) -> list[Target]:
        """Every registered target with its health; instance targets get their private IP."""
        with _asking("describe the target group's targets"):
            found = self._elbv2_client().describe_target_health(TargetGroupArn=self._target_group())
        listed = [
            Target(
                d["Target"]["Id"],
                d["Target"].get("Port") or 0,
                d.get("TargetHealth", {}).get("State", "unknown"),
                d.get("TargetHealth", {}).get("Reason", ""),
            )
            for d in found["TargetHealthDescriptions"]
        ]
        ips = self.private_ips(t.id for t in listed if t.id.startswith("i-"))
        return [
            Target(t.id, t.port, t.state, t.reason, ips.get(t.id) if t.id.startswith("i-") else t.id)
            for t in listed
        ]

    def group(self) -> Group | None:
        """The configured Auto Scaling group (None when `AUTOSCALING_GROUP_NAME` is unset)."""
        name = self.settings.autoscaling_group
        if name is None:
            return None
        with _asking(f"describe the Auto Scaling group {name}"):
            found = self._autoscaling_client().describe_auto_scaling_groups(AutoScalingGroupNames=[name])
        groups = found["AutoScalingGroups"]
        if not groups:
            raise FleetUnavailable(f"the Auto Scaling group {name!r} does not exist (AUTOSCALING_GROUP_NAME)")
        instances = {i["InstanceId"]: str(i["LifecycleState"]) for i in groups[0].get("Instances", [])}
        return Group(name, groups[0]["DesiredCapacity"], instances)

    def private_ips(self, instance_ids: Iterable[str]) -> dict[str, str]:
        """Instance id -> private IP, for those EC2 still knows (a terminated one may be missing)."""
        ids = sorted(set(instance_ids))
        if not ids:
            return {}
        found: dict[str, str] = {}
        with _asking("describe the instances"):
            # A filter, not InstanceIds=: an id EC2 no longer knows is left out instead of failing all.
            pages = (
                self._ec2_client()
                .get_paginator("describe_instances")
                .paginate(Filters=[{"Name": "instance-id", "Values": ids}])
            )
            for page in pages:
                for reservation in page["Reservations"]:
                    for instance in reservation["Instances"]:
                        if instance.get("PrivateIpAddress"):
                            found[instance["InstanceId"]] = instance["PrivateIpAddress"]
        return found

    def instance_target(self, instance_id: str) -> Target | None:
        """Where one EC2 instance's service listens; None when EC2 no longer knows the instance.

        The address is the instance's private IP: Auto Scaling deregisters a terminating instance
        from its target groups before the lifecycle hook runs, so the group may no longer list it.
        The port is `INSTANCE_PORT`, else its registration's port while still listed, else the
        target group's port.
        """
        address = self.private_ips([instance_id]).get(instance_id)
        if address is None:
            return None
        port = self.settings.instance_port
        if port is None and self.settings.target_group_arn is None:
            raise ConfigurationError("the lifecycle hook needs INSTANCE_PORT or TARGET_GROUP_ARN")
        if port is None:
            listed = [t for t in self.targets() if instance_id == t.id or address == t.id]
            port = listed[0].port if listed and listed[0].port else self._target_group_port()
        return Target(instance_id, port, "terminating", "", address)

    def record_lifecycle_heartbeat(self, action: LifecycleAction) -> None:
        """Restart the hook's heartbeat timeout: the instance stays in Terminating:Wait."""
        with _asking(f"record a lifecycle heartbeat for {action.instance_id}"):
            self._autoscaling_client().record_lifecycle_action_heartbeat(**_identifying(action))

    def complete_lifecycle_action(self, action: LifecycleAction) -> None:
        """Let Auto Scaling go on terminating the instance (result CONTINUE)."""
        with _asking(f"complete the lifecycle action of {action.instance_id}"):
            self._autoscaling_client().complete_lifecycle_action(
                **_identifying(action), LifecycleActionResult="CONTINUE"
            )

    def _target_group(self) -> str:
        if self.settings.target_group_arn is None:
            raise ConfigurationError("TARGET_GROUP_ARN is not set")
        return self.settings.target_group_arn

    def _target_group_port(self) -> int:
        with _asking("describe the target group"):
            found = self._elbv2_client().describe_target_groups(TargetGroupArns=[self._target_group()])
        return found["TargetGroups"][0]["Port"]

    # Imported here, not at module level: boto3 costs hundreds of milliseconds at a cold start,
    # and the zip leaves it to the Lambda runtime.
    def _elbv2_client(self) -> ElasticLoadBalancingv2Client:
        if self._elbv2 is None:
            import boto3

            self._elbv2 = boto3.client("elbv2", region_name=self.settings.region)
        return self._elbv2

    def _autoscaling_client(self) -> AutoScalingClient:
        if self._autoscaling is None:
            import boto3

            self._autoscaling = boto3.client("autoscaling", region_name=self.settings.region)
        return self._autoscaling

    def _ec2_client(self) -> EC2Client:
        if self._ec2 is None:
            import boto3

            self._ec2 = boto3.client("ec2", region_name=self.settings.region)
        return self._ec2


def _identifying(action: LifecycleAction) -> dict[str, str]:
    names = {
        "AutoScalingGroupName": action.group,
        "LifecycleHookName": action.hook,
        "InstanceId": action.instance_id,
    }
    return names | ({"LifecycleActionToken": action.token} if action.token else {})


@contextmanager
def _asking(what: str) -> Iterator[None]:
    """Turn botocore's errors into `FleetUnavailable`, so no driver exception leaks to callers."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        raise FleetUnavailable(f"cannot {what}: {exc}", code) from exc
    except BotoCoreError as exc:
        raise FleetUnavailable(f"cannot {what}: {exc}") from exc
