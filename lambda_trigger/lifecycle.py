"""Auto Scaling lifecycle hook `lambda_trigger.lifecycle.handler`: scale in without killing a batch.

For an `autoscaling:EC2_INSTANCE_TERMINATING` action (EventBridge's "EC2 Instance-terminate
Lifecycle Action", or an SNS notification), the handler drains the instance through the
service's own API, waits while it still runs batches — recording heartbeats so the instance
stays in Terminating:Wait — and then completes the action with CONTINUE. Past the configured
limit it alerts Slack and lets the instance go: the service's SIGTERM drain then stops what
is left, records it `interrupted`, and a live instance runs it again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from lambda_trigger.alerts import FAILURE, WARNING, Alerter
from lambda_trigger.aws_secrets import SecretStore, SecretUnavailable
from lambda_trigger.delivery import Answer, deliver, request_once
from lambda_trigger.events import UnreadableEvent, describe
from lambda_trigger.handler import settings_from_env
from lambda_trigger.lifecycle_events import Ignored, LifecycleAction, read_notification
from lambda_trigger.settings import ConfigurationError, Settings
from lambda_trigger.targets import Fleet, FleetUnavailable, Target
from lambda_trigger.tokens import Signer
from lambda_trigger.trigger import LambdaContext

log = logging.getLogger("lambda_trigger.lifecycle")

COMPLETE_RESERVE = 3.0  # seconds kept, besides the alert's reserve, to complete the action

_releaser: Releaser | None = None


def handler(event: object, context: LambdaContext | None = None) -> dict[str, Any]:
    """Drain the terminating instance, wait for its batches, complete the lifecycle action."""
    return container().handle(event, context)


def container() -> Releaser:
    """This container's `Releaser`, built from the environment on first use."""
    global _releaser
    if _releaser is None:
        _releaser = Releaser(settings_from_env())
    return _releaser


def reset_container() -> None:
    """Forget the per-container state, as a fresh Lambda container would (tests)."""
    global _releaser
    _releaser = None


class Releaser:
    """Settings, cached secret, signer, Slack client and AWS clients of one container."""

    def __init__(self, settings: Settings, secrets: SecretStore | None = None) -> None:
        self.settings = settings
        self.secrets = secrets or SecretStore()
        self.alerter = Alerter(settings.slack, self.secrets)
        self.fleet = Fleet(settings.fleet)
        self._signer: Signer | None = None

    def handle(self, event: object, context: LambdaContext | None = None) -> dict[str, Any]:
        """Release the instance the event names; ignore test notifications and other groups."""
        try:
            found = read_notification(event)
        except UnreadableEvent as exc:
            log.error("lifecycle.unreadable_event error=%s event=%s", exc, describe(event))
            fields = {"error": exc, "event": describe(event)}
            self.alerter.send(FAILURE, "batch-trigger: lifecycle hook could not read its event", fields)
            raise
        group = self.settings.fleet.autoscaling_group
        if isinstance(found, LifecycleAction) and group is not None and found.group != group:
            found = Ignored(f"group {found.group!r} is not AUTOSCALING_GROUP_NAME {group!r}")
        if isinstance(found, Ignored):
            log.info("lifecycle.ignored reason=%s", found.reason)
            return {"ignored": True, "reason": found.reason}
        return self.release(found, context)

    def release(self, action: LifecycleAction, context: LambdaContext | None) -> dict[str, Any]:
        """Drain, wait while batches run (with heartbeats), then complete with CONTINUE."""
        started = time.monotonic()
        limit = started + self._wait_limit(context)
        result: dict[str, Any] = {"instance_id": action.instance_id, "group": action.group}
        try:
            target = self.fleet.instance_target(action.instance_id)
            signer = self._signer_for()
        except (FleetUnavailable, ConfigurationError, SecretUnavailable) as exc:
            log.error("lifecycle.cannot_drain instance_id=%s error=%s", action.instance_id, exc)
            self._alert(FAILURE, f"cannot drain {action.instance_id}; released it", action, error=exc)
            return self._complete(action, result | {"outcome": "not drained", "error": str(exc)})
        if target is None:
            log.info("lifecycle.gone instance_id=%s reason=unknown_to_ec2", action.instance_id)
            return self._complete(action, result | {"outcome": "gone"})
        result["address"] = f"{target.address}:{target.port}"
        outcome = self._drain(action, target, signer, limit)
        if outcome["outcome"] == "draining":
            outcome = self._wait(action, target, signer, limit, outcome["instance"], outcome["running"])
        result |= outcome | {"waited_seconds": round(time.monotonic() - started, 3)}
        return self._complete(action, result)

    def _drain(self, action: LifecycleAction, target: Target, signer: Signer, limit: float) -> dict[str, Any]:
        # A drain token names the INSTANCE_ID it drains, and the service refuses it anywhere else.
        # That is the service's own setting (its hostname by default), not the EC2 instance id,
        # so the instance at the terminating EC2 instance's address is asked for it first.
        answer = self._request(action, target, "GET", "/v1/instance", signer.mint_read, limit)
        instance = _instance_id(answer)
        if instance is not None:
            drain = partial(signer.mint_drain, instance)  # a fresh jti per attempt: each is used up
            answer = self._request(action, target, "POST", "/v1/instance/drain", drain, limit)
        if answer.status is None:
            # Already gone (stopped, crashed): what ran there is recovered through its lease.
            log.info("lifecycle.gone instance_id=%s answer=%r", action.instance_id, answer.summary)
            return {"outcome": "unreachable"}
        if answer.status != 200 or instance is None:
            why = (
                answer.summary
                if answer.status != 200
                else f"{answer.summary} (no INSTANCE_ID: not batch-trigger?)"
            )
            log.error("lifecycle.drain_refused instance_id=%s answer=%r", action.instance_id, why)
            self._alert(FAILURE, f"could not drain {target.name}; released it", action, answer=why)
            return {"outcome": "not drained", "error": why}
        running = _run_ids(answer.body)
        log.info(
            "lifecycle.drained instance_id=%s instance=%s running=%s", action.instance_id, instance, running
        )
        return {"outcome": "draining", "instance": instance, "running": running}

    def _request(
        self,
        action: LifecycleAction,
        target: Target,
        method: str,
        path: str,
        mint: Callable[[], str],
        limit: float,
    ) -> Answer:
        """One call to the instance itself, retried while it does not answer, within `reach_timeout`."""
        fleet = self.settings.fleet
        return deliver(
            target.url(fleet, path),
            mint,  # a fresh token, with its own jti, per attempt
            budget=max(0.0, min(fleet.reach_timeout, limit - time.monotonic())),
            attempt_timeout=self.settings.attempt_timeout,
            backoff_base=self.settings.backoff_base,
            backoff_max=self.settings.backoff_max,
            label=f"{method} {path} instance_id={action.instance_id}",
            method=method,
        ).answer

    def _wait(
        self,
        action: LifecycleAction,
        target: Target,
        signer: Signer,
        limit: float,
        instance: str,
        running: list[str],
    ) -> dict[str, Any]:
        fleet = self.settings.fleet
        heartbeats, next_beat, silent_since = 0, time.monotonic() + fleet.lifecycle_heartbeat, None
        outcome = "released"
        while running:
            now = time.monotonic()
            if now >= limit:
                log.error("lifecycle.limit instance_id=%s running=%s", action.instance_id, running)
                title = f"{instance or target.name} released with batches still running"
                self._alert(WARNING, title, action, instance=instance, running=", ".join(running))
                outcome = "limit reached"
                break
            if now >= next_beat:
                heartbeats += self._heartbeat(action)
                next_beat = now + fleet.lifecycle_heartbeat
            time.sleep(max(0.0, min(fleet.lifecycle_poll, limit - now, next_beat - now)))
            # The drain token reads this one instance's state, and nothing else.
            url, token = target.url(fleet, "/v1/instance"), signer.mint_drain(instance)
            answer = request_once("GET", url, token, self.settings.attempt_timeout)
            if answer.status == 200:
                running, silent_since = _run_ids(answer.body), None
                continue
            silent_since = silent_since or time.monotonic()
            if time.monotonic() - silent_since >= fleet.reach_timeout:
                # It stopped answering while draining: it died or was stopped; leases recover its runs.
                log.warning("lifecycle.lost instance_id=%s answer=%r", action.instance_id, answer.summary)
                outcome = "unreachable"
                break
        return {"outcome": outcome, "instance": instance, "running": running, "heartbeats": heartbeats}

    def _heartbeat(self, action: LifecycleAction) -> int:
        try:
            self.fleet.record_lifecycle_heartbeat(action)
        except FleetUnavailable as exc:
            # Not fatal: the next heartbeat may pass; if the hook's timeout runs out, Auto Scaling
            # applies its default result, and the service's SIGTERM drain is still there.
            log.warning("lifecycle.heartbeat_failed instance_id=%s error=%s", action.instance_id, exc)
            return 0
        return 1

    def _complete(self, action: LifecycleAction, result: dict[str, Any]) -> dict[str, Any]:
        try:
            self.fleet.complete_lifecycle_action(action)
        except FleetUnavailable as exc:
            if exc.code == "ValidationError":
                # No such action any more: its heartbeat timeout ran out (heartbeats failed?) or
                # someone completed it. Retrying cannot help; say so and stop.
                log.warning("lifecycle.not_pending instance_id=%s error=%s", action.instance_id, exc)
                self._alert(
                    WARNING, f"lifecycle action of {action.instance_id} no longer pending", action, error=exc
                )
                return result | {"completed": False, "error": str(exc)}
            log.error("lifecycle.complete_failed instance_id=%s error=%s", action.instance_id, exc)
            self._alert(
                FAILURE, f"cannot complete the lifecycle action of {action.instance_id}", action, error=exc
            )
            raise
        log.info("lifecycle.completed instance_id=%s outcome=%s", action.instance_id, result.get("outcome"))
        return result | {"completed": True, "result": "CONTINUE"}

    def _wait_limit(self, context: LambdaContext | None) -> float:
        wait = self.settings.fleet.lifecycle_max_wait
        if context is None:
            return wait
        remaining = context.get_remaining_time_in_millis() / 1000
        return max(0.0, min(wait, remaining - self.settings.alert_reserve - COMPLETE_RESERVE))

    def _signer_for(self) -> Signer:
        if self._signer is None:
            s = self.settings
            key = s.secret or self.secrets.get(s.secret_arn or "")
            self._signer = Signer(key, s.algorithm, s.kid, s.audience, s.token_lifetime)
        return self._signer

    def _alert(self, icon: str, title: str, action: LifecycleAction, **fields: object) -> None:
        described = {
            "instance id": action.instance_id,
            "group": action.group,
            "hook": action.hook,
        } | {name.replace("_", " "): value for name, value in fields.items()}
        self.alerter.send(icon, f"batch-trigger: scale-in: {title}", described)


def _instance_id(answer: Answer) -> str | None:
    """The service's INSTANCE_ID from its `GET /v1/instance` answer (None: no such answer)."""
    instance = answer.body.get("instance") if answer.status == 200 else None
    return instance if isinstance(instance, str) and instance else None


def _run_ids(body: dict[str, Any]) -> list[str]:
    running = body.get("running")
    return [str(run_id) for run_id in running] if isinstance(running, list) else []
