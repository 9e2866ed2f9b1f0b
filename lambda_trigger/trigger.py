"""One container's trigger flow: event → firing → signed POST with retries → summary or alert."""

from __future__ import annotations

import logging
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

from lambda_trigger.alerts import FAILURE, WARNING, Alerter
from lambda_trigger.aws_secrets import SecretStore, SecretUnavailable
from lambda_trigger.delivery import Answer, Delivery, deliver
from lambda_trigger.events import Firing, UnreadableEvent, describe, read_event
from lambda_trigger.settings import ConfigurationError, Settings
from lambda_trigger.tokens import Signer

if TYPE_CHECKING:
    from lambda_trigger.targets import Fleet

log = logging.getLogger(__name__)


class LambdaContext(Protocol):
    """The part of Lambda's context object the trigger uses."""

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before Lambda stops this invocation."""
        ...


class TriggerFailed(RuntimeError):
    """The run was not triggered; raised so Lambda's retries, DLQ or on-failure destination act."""

    def __init__(self, message: str, firing: Firing, answer: Answer, attempts: int) -> None:
        super().__init__(message)
        self.firing = firing
        self.answer = answer
        self.attempts = attempts


class Trigger:
    """Settings, cached secret, signer and Slack client of one container, reused when warm."""

    def __init__(
        self,
        settings: Settings,
        secrets: SecretStore | None = None,
        alerter: Alerter | None = None,
    ) -> None:
        self.settings = settings
        self.secrets = secrets or SecretStore()
        self.alerter = alerter or Alerter(settings.slack, self.secrets)
        self._signer: Signer | None = None
        self._fleet: Fleet | None = None

    @property
    def fleet(self) -> Fleet:
        """The target group and Auto Scaling group of broadcast jobs (built on first use only)."""
        if self._fleet is None:
            # Imported here: only broadcast jobs need it, and the cold path stays small.
            from lambda_trigger.targets import Fleet

            self._fleet = Fleet(self.settings.fleet)
        return self._fleet

    def handle(self, event: object, context: LambdaContext | None = None) -> dict[str, Any]:
        """Trigger the event's (job, slot) once; return the run summary or raise after alerting."""
        request_id = str(getattr(context, "aws_request_id", "") or "")
        try:
            firing = read_event(event, self.settings.rule_jobs)
        except UnreadableEvent as exc:
            log.error("trigger.unreadable_event error=%s event=%s", exc, describe(event))
            fields = {"error": exc, "event": describe(event), "request id": request_id}
            self.alerter.send(FAILURE, "batch-trigger: Lambda could not read its event", fields)
            raise
        label = f"job={firing.job} slot={firing.slot} event_id={firing.event_id}"
        signer = self._signer_for(firing, request_id)
        if firing.job in self.settings.fleet.broadcast_jobs:
            return self._broadcast(firing, signer, context, label, request_id)
        delivery = deliver(
            f"{self.settings.app_url}/v1/jobs/{quote(firing.job)}/runs",
            lambda: signer.mint(firing),
            budget=self.budget(context),
            attempt_timeout=self.settings.attempt_timeout,
            backoff_base=self.settings.backoff_base,
            backoff_max=self.settings.backoff_max,
            label=label,
        )
        return self._outcome(firing, delivery, label, request_id)

    def budget(self, context: LambdaContext | None) -> float:
        """Seconds the delivery may take: the deadline, cut to leave the alert its reserve."""
        if context is None:
            return self.settings.deadline
        remaining = context.get_remaining_time_in_millis() / 1000
        room = remaining - self.settings.alert_reserve
        # With a Lambda timeout shorter than deadline + reserve, still make a real attempt,
        # but keep at least half of what is left for the alert.
        return max(0.0, min(self.settings.deadline, max(room, remaining / 2)))

    def _signer_for(self, firing: Firing, request_id: str) -> Signer:
        if self._signer is None:
            s = self.settings
            try:
                key = s.secret or self.secrets.get(s.secret_arn or "")
                self._signer = Signer(key, s.algorithm, s.kid, s.audience, s.token_lifetime)
            except (SecretUnavailable, ConfigurationError) as exc:
                log.error("trigger.no_signing_key job=%s error=%s", firing.job, exc)
                fields = _fields(firing, "", 0) | {"error": exc, "request id": request_id}
                self.alerter.send(FAILURE, "batch-trigger: Lambda cannot sign tokens", fields)
                raise
        return self._signer

    def _outcome(self, firing: Firing, delivery: Delivery, label: str, request_id: str) -> dict[str, Any]:
        answer, attempts = delivery.answer, delivery.attempts
        body = answer.body
        summary = {
            "job": firing.job,
            "slot": firing.slot,
            "run_id": body.get("id"),
            "status": body.get("status"),
            "duplicate": bool(body.get("duplicate", False)),
            "attempts": attempts,
        }
        if answer.status in (200, 202) and body.get("id") is not None:
            log.info(
                "trigger.done %s run_id=%s http=%s attempts=%d", label, body["id"], answer.status, attempts
            )
            if body.get("target"):
                # A broadcast job sent through the load balancer ran on one instance only.
                log.warning("trigger.broadcast_through_balancer %s", label)
                title = f"batch-trigger: {firing.job} runs per instance, but only one instance was triggered"
                fields = _fields(firing, answer.summary, attempts) | {"fix": "add it to BROADCAST_JOBS"}
                self.alerter.send(WARNING, title, fields)
            return summary
        fields = _fields(firing, answer.summary, attempts) | {"request id": request_id}
        if answer.status == 409:
            log.warning("trigger.overlap %s answer=%r", label, answer.summary)
            title = f"batch-trigger: {firing.job} {firing.slot} skipped, another run is in progress"
            self.alerter.send(WARNING, title, fields)
            return summary | {"status": body.get("status") or "skipped"}
        if delivery.out_of_time:
            why = f"no final answer within {delivery.elapsed:.1f} s"
        elif answer.status in (200, 202):
            why = "the answer is not a run (is APP_URL the batch-trigger service?)"
        else:
            why = "permanent error"
        message = f"trigger failed for {label}: {why} after {attempts} attempt(s): {answer.summary}"
        log.error("trigger.failed %s why=%r attempts=%d answer=%r", label, why, attempts, answer.summary)
        self.alerter.send(FAILURE, f"batch-trigger: trigger failed ({why})", fields)
        raise TriggerFailed(message, firing, answer, attempts)

    def _broadcast(
        self, firing: Firing, signer: Signer, context: LambdaContext | None, label: str, request_id: str
    ) -> dict[str, Any]:
        from lambda_trigger.broadcast import BroadcastIncomplete, cover
        from lambda_trigger.targets import FleetUnavailable

        try:
            mint = partial(signer.mint, firing)  # a fresh token per attempt and target
            coverage = cover(firing, self.fleet, mint, self.settings, lambda: self.budget(context))
        except (FleetUnavailable, ConfigurationError) as exc:
            log.error("broadcast.no_targets %s error=%s", label, exc)
            fields = _fields(firing, "", 0) | {"error": exc, "request id": request_id}
            self.alerter.send(FAILURE, f"batch-trigger: cannot list the instances for {firing.job}", fields)
            raise
        if coverage.complete:
            log.info("broadcast.done %s runs=%s duplicates=%d", label, coverage.runs, coverage.duplicates)
            return coverage.summary(firing)
        log.error("broadcast.incomplete %s shortfall=%r", label, coverage.shortfalls)
        fields = _fields(firing, "", 0) | coverage.fields() | {"request id": request_id}
        title = f"batch-trigger: broadcast of {firing.job} did not reach every instance"
        self.alerter.send(FAILURE, title, fields)
        message = f"broadcast incomplete for {label}: " + "; ".join(coverage.shortfalls)
        raise BroadcastIncomplete(message, firing, coverage)


def _fields(firing: Firing, answer: str, attempts: int) -> dict[str, object]:
    return {
        "rule": firing.rule or "(direct payload)",
        "job": firing.job,
        "slot": firing.slot,
        "event id": firing.event_id or "",
        "last answer": answer,
        "attempts": attempts,
    }
