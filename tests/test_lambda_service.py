"""The real handler against the real service under gunicorn, with the sample EventBridge events.

Every test here also pins the contract the two halves share: the service accepts the tokens
the Lambda mints. Proxy tests put a real fault-injecting HTTP proxy between them.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import pytest

from lambda_trigger import TriggerFailed
from lambda_trigger.handler import handler, reset_container
from tests.lambda_support.lambda_env import Context, configure, load_event
from tests.lambda_support.proxy import FaultProxy, answer, slow
from tests.support.live import LiveService, format_slot, unique_slot
from tests.support.slack import SlackReceiver


def lambda_for(
    monkeypatch: pytest.MonkeyPatch,
    service: LiveService,
    slack: SlackReceiver,
    app_url: str | None = None,
    **env: str,
) -> None:
    """Configure a fresh Lambda container that talks to `app_url` (default: the service)."""
    configure(
        monkeypatch,
        APP_URL=app_url or service.url,
        TRIGGER_SECRET=service.secret,
        SLACK_WEBHOOK_URL=slack.url,
        **env,
    )


def runs_of(service: LiveService, job: str, slot: str) -> list[dict[str, Any]]:
    """The ledger's runs of `job` for one slot."""
    return [run for run in service.runs(job) if run["slot"] == slot]


def executions(service: LiveService, slot: str) -> int:
    """How many times the counting job's body ran for `slot`."""
    return sum(f" {slot[:-1]}" in line for line in service.executions("count"))


def direct(slot: str | None = None) -> dict[str, str]:
    """A direct payload (EventBridge Scheduler, manual invoke) for the counting job."""
    return {"job": "count", "slot": slot or format_slot(unique_slot())}


def test_it_collapses_three_deliveries_of_one_event_into_one_run(
    monkeypatch: pytest.MonkeyPatch, service: LiveService, slack: SlackReceiver
) -> None:
    event = load_event("scheduled-daily")
    lambda_for(monkeypatch, service, slack)
    first, second = handler(event, Context()), handler(event, Context())
    reset_container()  # Lambda may redeliver to another container
    third = handler(event, Context())
    assert (first["duplicate"], second["duplicate"], third["duplicate"]) == (False, True, True)
    assert first["run_id"] == second["run_id"] == third["run_id"]
    (run,) = runs_of(service, "daily", "2026-11-22T15:00:00Z")
    assert run["event_id"] == event["id"] and run["trigger"] == "schedule"
    assert service.wait_final(run["id"])["status"] == "succeeded"


def test_it_triggers_the_job_rule_jobs_names_for_a_custom_bus_rule(
    monkeypatch: pytest.MonkeyPatch, service: LiveService, slack: SlackReceiver
) -> None:
    event = load_event("scheduled-custom-bus")
    lambda_for(monkeypatch, service, slack, RULE_JOBS='{"myapp-prod-Daily": "daily"}')
    result = handler(event, Context())
    assert (result["job"], result["slot"]) == ("daily", "2026-11-23T00:00:00Z")
    assert service.wait_final(result["run_id"])["status"] == "succeeded"


def test_it_triggers_a_direct_payload_as_the_same_slot_as_the_scheduled_event(
    monkeypatch: pytest.MonkeyPatch, service: LiveService, slack: SlackReceiver
) -> None:
    lambda_for(monkeypatch, service, slack)
    from_scheduler = handler(load_event("scheduler-direct"), Context())
    from_rule = handler(load_event("scheduled-daily"), Context())
    assert from_scheduler["run_id"] == from_rule["run_id"]
    assert (from_scheduler["job"], from_scheduler["slot"]) == ("daily", "2026-11-22T15:00:00Z")
    assert len(runs_of(service, "daily", "2026-11-22T15:00:00Z")) == 1
    service.wait_final(from_rule["run_id"])


def test_it_sends_one_request_for_an_unknown_rule_then_alerts_and_raises(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    service: LiveService,
    slack: SlackReceiver,
) -> None:
    event, before = load_event("unknown-rule"), len(slack.messages)
    with FaultProxy(service.url) as proxy:
        lambda_for(monkeypatch, service, slack, app_url=proxy.url)
        with caplog.at_level(logging.DEBUG), pytest.raises(TriggerFailed, match="unknown_job"):
            handler(event, Context())
    assert [seen.path for seen in proxy.seen] == ["/v1/jobs/weekly/runs"]
    alert = slack.wait_for(before + 1)[before]["text"]
    for field in (
        "*rule*: Weekly",
        "*job*: weekly",
        "*slot*: 2026-11-22T15:00:00Z",
        f"*event id*: {event['id']}",
        "HTTP 404 unknown_job",
        "*attempts*: 1",
    ):
        assert field in alert
    token = proxy.seen[0].headers["Authorization"].removeprefix("Bearer ")
    said = caplog.text + json.dumps(slack.messages)
    assert service.secret not in said and token not in said


def test_it_gets_through_two_503s_to_one_execution(
    monkeypatch: pytest.MonkeyPatch, service: LiveService, slack: SlackReceiver
) -> None:
    draining = json.dumps({"error": "draining", "message": "instance is draining"}).encode()
    payload = direct()
    with FaultProxy(service.url) as proxy:
        proxy.plan(answer(503, draining, Retry_After="1"), answer(503, draining))
        lambda_for(monkeypatch, service, slack, app_url=proxy.url)
        result = handler(payload, Context())
    assert (result["attempts"], result["duplicate"], len(proxy.seen)) == (3, False, 3)
    assert service.wait_final(result["run_id"])["status"] == "succeeded"
    assert executions(service, payload["slot"]) == 1


def test_it_gives_up_on_an_always_502_inside_the_remaining_time(
    monkeypatch: pytest.MonkeyPatch, service: LiveService, slack: SlackReceiver
) -> None:
    payload, before = direct(), len(slack.messages)
    with FaultProxy(service.url, default=answer(502, b"Bad Gateway")) as proxy:
        lambda_for(monkeypatch, service, slack, app_url=proxy.url, DEADLINE_SECONDS="600")
        started = time.monotonic()
        with pytest.raises(TriggerFailed, match="no final answer") as failure:
            handler(payload, Context(remaining_seconds=6))
    elapsed = time.monotonic() - started
    assert elapsed < 6 and failure.value.attempts == len(proxy.seen) >= 3
    alert = slack.wait_for(before + 1)[before]["text"]
    assert "HTTP 502" in alert and f"*attempts*: {failure.value.attempts}" in alert
    assert runs_of(service, "count", payload["slot"]) == []


def test_it_retries_a_refused_connection(
    monkeypatch: pytest.MonkeyPatch, service: LiveService, slack: SlackReceiver
) -> None:
    payload = direct()
    with FaultProxy(service.url, refuse_for=0.6) as proxy:  # nothing listens for 0.6 s
        lambda_for(monkeypatch, service, slack, app_url=proxy.url)
        result = handler(payload, Context())
    assert result["attempts"] >= 2 and len(proxy.seen) == 1
    service.wait_final(result["run_id"])
    assert executions(service, payload["slot"]) == 1


def test_it_retries_an_answer_slower_than_the_attempt_timeout(
    monkeypatch: pytest.MonkeyPatch, service: LiveService, slack: SlackReceiver
) -> None:
    payload = direct()
    with FaultProxy(service.url) as proxy:
        proxy.plan(slow(2.0))  # the service takes the run, its answer arrives too late
        lambda_for(monkeypatch, service, slack, app_url=proxy.url, ATTEMPT_TIMEOUT_SECONDS="0.5")
        result = handler(payload, Context())
    assert result["attempts"] >= 2 and result["duplicate"] is True  # the late answer was a 202
    service.wait_final(result["run_id"])
    assert executions(service, payload["slot"]) == 1
