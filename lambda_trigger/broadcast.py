"""Broadcast jobs: the signed trigger goes to every healthy target directly, and coverage is proven.

A job declared `scope="instance"` in the service runs once per instance per slot. The load
balancer would hand the trigger to one instance, so for the jobs in `BROADCAST_JOBS` the Lambda
lists the target group's targets and POSTs to each one itself, in parallel, each with the usual
retries and a fresh token per attempt. It succeeds only when every healthy target answered with
its own run (and, with `AUTOSCALING_GROUP_NAME`, as many instances ran it as the group wants):
a fan-out that reached nobody must never look like success.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lambda_trigger.delivery import Delivery, deliver
from lambda_trigger.events import Firing
from lambda_trigger.settings import Settings
from lambda_trigger.targets import HEALTHY, Fleet, FleetUnavailable, Group, Target

log = logging.getLogger(__name__)

MAX_PARALLEL = 32  # threads posting at once; a fleet larger than this is covered in waves


class BroadcastIncomplete(RuntimeError):
    """Some instance did not run the broadcast slot; raised so Lambda's retries and DLQ act."""

    def __init__(self, message: str, firing: Firing, coverage: Coverage) -> None:
        super().__init__(message)
        self.firing = firing
        self.coverage = coverage


@dataclass
class Coverage:
    """Which instances the broadcast reached, and every reason it fell short."""

    targets: list[Target]  # the healthy targets it posted to
    runs: dict[str, str] = field(default_factory=dict)  # the service's INSTANCE_ID -> run id
    reached: dict[str, str] = field(default_factory=dict)  # INSTANCE_ID -> the target that answered
    duplicates: int = 0  # targets whose slot already had its run (a redelivered event)
    attempts: int = 0
    shortfalls: list[str] = field(default_factory=list)  # one line each, naming the instance
    group: Group | None = None

    @property
    def complete(self) -> bool:
        """True when no instance was missed."""
        return not self.shortfalls

    def summary(self, firing: Firing) -> dict[str, Any]:
        """What the handler returns for a fully covered slot."""
        return {
            "job": firing.job,
            "slot": firing.slot,
            "scope": "instance",
            "targets": len(self.targets),
            "runs": dict(sorted(self.runs.items())),
            "duplicates": self.duplicates,
            "attempts": self.attempts,
            "desired_capacity": self.group.desired if self.group else None,
        }

    def fields(self) -> dict[str, object]:
        """Alert fields: who ran it and who did not."""
        ran = ", ".join(f"{name} at {self.reached[name]}" for name in sorted(self.runs)) or "none"
        return {
            "instances reached": f"{len(self.runs)} of {len(self.targets)} healthy target(s): {ran}",
            "shortfall": "\n".join(f"- {line}" for line in self.shortfalls),
            "desired capacity": f"{self.group.desired} ({self.group.name})" if self.group else "",
            "attempts": self.attempts,
        }


def cover(
    firing: Firing, fleet: Fleet, mint: Callable[[], str], settings: Settings, budget: Callable[[], float]
) -> Coverage:
    """POST the trigger to every healthy target and check the answers cover the fleet."""
    registered = fleet.targets()
    healthy = [t for t in registered if t.state == HEALTHY]
    coverage = Coverage(healthy, group=fleet.group())
    if not healthy:
        listed = ", ".join(f"{t.name} {t.state}" for t in registered) or "none registered"
        coverage.shortfalls.append(f"no healthy target in the target group ({listed})")
    # Registered, neither healthy nor leaving (initial, unhealthy, a stopped instance): a member
    # of the fleet this broadcast cannot reach, so its slot would silently stay unrun there.
    for target in registered:
        if target.state != HEALTHY and not target.leaving and healthy:
            why = f": {target.reason}" if target.reason else ""
            coverage.shortfalls.append(f"{target.name}: not healthy ({target.state}{why}), not triggered")
    seconds = budget()  # after the AWS calls, so their time counts against the deadline
    path = f"/v1/jobs/{firing.job}/runs"

    def post(target: Target) -> Delivery | None:
        if target.address is None:
            return None
        label = f"job={firing.job} slot={firing.slot} target={target.name}"
        return deliver(
            target.url(settings.fleet, path),
            mint,
            budget=seconds,
            attempt_timeout=settings.attempt_timeout,
            backoff_base=settings.backoff_base,
            backoff_max=settings.backoff_max,
            label=label,
        )

    from concurrent.futures import ThreadPoolExecutor  # only broadcasts fan out in threads

    with ThreadPoolExecutor(max_workers=max(1, min(len(healthy), MAX_PARALLEL))) as pool:
        deliveries = list(pool.map(post, healthy))
    for target, delivery in zip(healthy, deliveries, strict=True):
        _count(coverage, firing, target, delivery)
    if coverage.group is not None and len(coverage.runs) != coverage.group.desired:
        coverage.shortfalls.append(_capacity_shortfall(coverage, coverage.group, fleet))
    return coverage


def _count(coverage: Coverage, firing: Firing, target: Target, delivery: Delivery | None) -> None:
    if delivery is None:
        coverage.shortfalls.append(f"{target.name}: EC2 has no private IP for it, not triggered")
        return
    coverage.attempts += delivery.attempts
    answer, body = delivery.answer, delivery.answer.body
    if answer.status not in (200, 202) or body.get("id") is None:
        late = f" (gave up after {delivery.attempts} attempt(s))" if delivery.out_of_time else ""
        coverage.shortfalls.append(f"{target.name}: {answer.summary or 'no answer'}{late}")
        return
    instance = str(body.get("target") or "")
    if not instance:
        # The service ran it as a fleet job: one instance ran it, the others answer its duplicate.
        coverage.shortfalls.append(
            f"{target.name}: run {body['id']} is not per instance: is {firing.job!r} declared "
            f"scope='instance' in the service? (else remove it from BROADCAST_JOBS)"
        )
        return
    if instance in coverage.runs:
        coverage.shortfalls.append(
            f"{target.name}: answered as instance {instance!r}, like {coverage.reached[instance]}: "
            "give every instance its own INSTANCE_ID"
        )
        return
    coverage.runs[instance] = str(body["id"])
    coverage.reached[instance] = target.name
    coverage.duplicates += answer.status == 200


def _capacity_shortfall(coverage: Coverage, group: Group, fleet: Fleet) -> str:
    line = f"{len(coverage.runs)} instance(s) ran it; Auto Scaling group {group.name} wants {group.desired}"
    answered = {coverage.reached[name] for name in coverage.runs}
    reached = {t.id for t in coverage.targets if t.name in answered}
    reached |= {t.address for t in coverage.targets if t.name in answered and t.address}
    in_service = [i for i, state in group.instances.items() if state == "InService" and i not in reached]
    if in_service:
        # Instance targets carry the instance id; ip targets are matched by private IP.
        try:
            ips = fleet.private_ips(in_service)
        except FleetUnavailable as exc:
            log.warning("broadcast.no_instance_addresses error=%s", exc)
            ips = {}
        missed = sorted(i for i in in_service if ips.get(i) not in reached)
        if missed:
            line += f"; in service without a run: {', '.join(missed)}"
    return line
