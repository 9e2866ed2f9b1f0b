"""lambda_trigger.handler against scripted answers from a real local HTTP server (no service).

The proxy here has no upstream: it answers as the service or a load balancer would, so each
outcome (retry, give up, warn, refuse) is shown without depending on the service's state.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator

import jwt
import pytest

from lambda_trigger import ConfigurationError, TriggerFailed, UnreadableEvent
from lambda_trigger.handler import handler
from tests.lambda_support.lambda_env import SECRET, Context, configure, load_event
from tests.lambda_support.proxy import FaultProxy, answer, drop
from tests.support.slack import SlackReceiver

DAILY = load_event("scheduled-daily")
SLOT = "2026-11-22T15:00:00Z"


def run(status: str = "accepted", **extra: object) -> bytes:
    """A run as the service answers it."""
    body = {"id": "41", "job": "daily", "slot": SLOT, "status": status, "attempt": 1} | extra
    return json.dumps(body).encode()


def error(code: str, message: str) -> bytes:
    """An error body as the service answers it."""
    return json.dumps({"error": code, "message": message}).encode()


@pytest.fixture
def receiver() -> Iterator[SlackReceiver]:
    """A Slack stand-in of this test's own, so alerts are counted from zero."""
    with SlackReceiver() as slack:
        yield slack


def test_it_posts_an_empty_json_object_with_a_fresh_bearer_token_per_attempt(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with FaultProxy() as proxy:
        proxy.plan(answer(503, error("draining", "instance is draining")), answer(202, run()))
        configure(monkeypatch, APP_URL=proxy.url, TRIGGER_KID="k1")
        result = handler(DAILY, Context())
    assert result == {
        "job": "daily",
        "slot": SLOT,
        "run_id": "41",
        "status": "accepted",
        "duplicate": False,
        "attempts": 2,
    }
    jtis = set()
    for seen in proxy.seen:
        assert (seen.method, seen.path, seen.body) == ("POST", "/v1/jobs/daily/runs", b"{}")
        assert seen.headers["Content-Type"] == "application/json"
        token = seen.headers["Authorization"].removeprefix("Bearer ")
        assert jwt.get_unverified_header(token)["kid"] == "k1"
        claims = jwt.decode(token, SECRET, algorithms=["HS256"], audience="batch-trigger")
        assert (claims["sub"], claims["slot"], claims["event_id"]) == ("daily", SLOT, DAILY["id"])
        jtis.add(claims["jti"])
    assert len(jtis) == 2


def test_it_reports_a_duplicate_delivery_as_such(monkeypatch: pytest.MonkeyPatch) -> None:
    with FaultProxy(default=answer(200, run("succeeded", duplicate=True))) as proxy:
        configure(monkeypatch, APP_URL=proxy.url)
        result = handler(DAILY, Context())
    assert (result["duplicate"], result["status"], result["attempts"]) == (True, "succeeded", 1)


def test_it_retries_a_dropped_connection_and_a_429(monkeypatch: pytest.MonkeyPatch) -> None:
    with FaultProxy() as proxy:
        proxy.plan(drop(), answer(429, error("busy", "slow down")), answer(202, run()))
        configure(monkeypatch, APP_URL=proxy.url)
        assert handler(DAILY, Context())["attempts"] == 3


def test_it_sends_again_a_request_the_server_timed_out_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    """408: the instance never read the request whole (RFC 9110: the client may repeat it)."""
    with FaultProxy() as proxy:
        timed_out = error("request_timeout", "the request did not arrive in time")
        proxy.plan(answer(408, timed_out), answer(202, run()))
        configure(monkeypatch, APP_URL=proxy.url)
        assert handler(DAILY, Context())["attempts"] == 2


def test_it_waits_as_long_as_retry_after_says(monkeypatch: pytest.MonkeyPatch) -> None:
    with FaultProxy() as proxy:
        proxy.plan(answer(503, error("ledger_unavailable", "try later"), Retry_After="1"), answer(202, run()))
        configure(monkeypatch, APP_URL=proxy.url)
        handler(DAILY, Context())
    assert proxy.seen[1].at - proxy.seen[0].at >= 1.0


def test_it_gives_up_at_once_when_retry_after_is_past_the_deadline(
    monkeypatch: pytest.MonkeyPatch, receiver: SlackReceiver
) -> None:
    with FaultProxy(default=answer(503, error("draining", "bye"), Retry_After="120")) as proxy:
        configure(monkeypatch, APP_URL=proxy.url, SLACK_WEBHOOK_URL=receiver.url)
        started = time.monotonic()
        with pytest.raises(TriggerFailed, match="no final answer"):
            handler(DAILY, Context(30))
    assert time.monotonic() - started < 5 and len(proxy.seen) == 1
    assert "HTTP 503 draining bye" in receiver.wait_for(1)[0]["text"]


@pytest.mark.parametrize(
    ("status", "body", "headers", "why"),
    [
        (401, error("token_invalid", "bad signature"), {}, "token_invalid"),
        (403, error("job_mismatch", "token is for another job"), {}, "job_mismatch"),
        (400, error("malformed", "body must be a JSON object"), {}, "malformed"),
        (301, b"", {"Location": "https://lb.example/v1/jobs/daily/runs"}, "set APP_URL"),
        (200, b"<html>It works!</html>", {"Content_Type": "text/html"}, "not a run"),
    ],
)
def test_it_does_not_retry_a_permanent_answer_and_alerts(
    monkeypatch: pytest.MonkeyPatch,
    receiver: SlackReceiver,
    status: int,
    body: bytes,
    headers: dict[str, str],
    why: str,
) -> None:
    with FaultProxy(default=answer(status, body, **headers)) as proxy:
        configure(monkeypatch, APP_URL=proxy.url, SLACK_WEBHOOK_URL=receiver.url)
        with pytest.raises(TriggerFailed) as failure:
            handler(DAILY, Context())
    assert len(proxy.seen) == 1 and failure.value.attempts == 1
    (alert,) = receiver.wait_for(1)
    assert why in alert["text"] and why in str(failure.value)
    for field in (
        "*rule*: Daily",
        "*job*: daily",
        f"*slot*: {SLOT}",
        f"*event id*: {DAILY['id']}",
        "*attempts*: 1",
        "*last answer*: HTTP",
    ):
        assert field in alert["text"]


def test_it_warns_slack_of_an_overlap_and_returns_normally(
    monkeypatch: pytest.MonkeyPatch, receiver: SlackReceiver
) -> None:
    overlap = error("overlap", "daily is running for another slot")
    with FaultProxy(default=answer(409, overlap)) as proxy:
        configure(monkeypatch, APP_URL=proxy.url, SLACK_WEBHOOK_URL=receiver.url)
        result = handler(DAILY, Context())
    assert (result["status"], result["attempts"], len(proxy.seen)) == ("skipped", 1, 1)
    (warning,) = receiver.wait_for(1)
    assert warning["text"].startswith(":warning:") and "overlap" in warning["text"]


def test_it_alerts_and_raises_on_an_event_it_cannot_read(
    monkeypatch: pytest.MonkeyPatch, receiver: SlackReceiver
) -> None:
    with FaultProxy() as proxy:
        configure(monkeypatch, APP_URL=proxy.url, SLACK_WEBHOOK_URL=receiver.url)
        with pytest.raises(UnreadableEvent):
            handler({"detail-type": "Scheduled Event", "resources": []}, Context())
    assert proxy.seen == []
    assert "could not read its event" in receiver.wait_for(1)[0]["text"]


def test_it_alerts_and_raises_on_bad_configuration(
    monkeypatch: pytest.MonkeyPatch, receiver: SlackReceiver
) -> None:
    configure(monkeypatch, APP_URL="", SLACK_WEBHOOK_URL=receiver.url)
    with pytest.raises(ConfigurationError, match="APP_URL"):
        handler(DAILY, Context())
    assert "APP_URL is required" in receiver.wait_for(1)[0]["text"]


def test_it_raises_the_trigger_failure_when_slack_answers_500(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    unknown = answer(404, error("unknown_job", "no job 'daily'"))
    with FaultProxy(default=answer(500, b"error")) as broken, FaultProxy(default=unknown) as app:
        configure(monkeypatch, APP_URL=app.url, SLACK_WEBHOOK_URL=f"{broken.url}/services/T/B/X")
        with caplog.at_level(logging.DEBUG), pytest.raises(TriggerFailed, match="unknown_job"):
            handler(DAILY, Context())
    assert len(broken.seen) == 2  # one bounded retry of the 5xx, then the real error wins
    assert "alert.failed" in caplog.text and "/services/T/B/X" not in caplog.text


def test_it_raises_the_trigger_failure_when_slack_is_unreachable(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    closed = FaultProxy()  # a free port nobody listens on
    unknown = answer(404, error("unknown_job", "no job 'daily'"))
    with FaultProxy(default=unknown) as app:
        configure(monkeypatch, APP_URL=app.url, SLACK_WEBHOOK_URL=f"{closed.url}/services/T/B/X")
        with caplog.at_level(logging.DEBUG), pytest.raises(TriggerFailed, match="unknown_job"):
            handler(DAILY, Context())
    assert "alert.failed" in caplog.text and "/services/T/B/X" not in caplog.text


def test_it_keeps_secrets_and_tokens_out_of_logs_and_slack(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, receiver: SlackReceiver
) -> None:
    with FaultProxy(default=answer(502, b"Bad Gateway", Content_Type="text/plain")) as proxy:
        configure(monkeypatch, APP_URL=proxy.url, SLACK_WEBHOOK_URL=receiver.url, DEADLINE_SECONDS="1")
        with caplog.at_level(logging.DEBUG), pytest.raises(TriggerFailed):
            handler(DAILY, Context())
    tokens = [seen.headers["Authorization"].removeprefix("Bearer ") for seen in proxy.seen]
    said = caplog.text + json.dumps(receiver.wait_for(1))
    assert len(tokens) >= 2 and "trigger.retry" in caplog.text
    for credential in [SECRET, receiver.url, *tokens]:
        assert credential not in said


def rule_fired(rule: str) -> dict[str, object]:
    """The daily sample event, as a rule named `rule` fires it."""
    return DAILY | {"resources": [f"arn:aws:events:us-east-1:123456789012:rule/{rule}"]}


@pytest.mark.parametrize(
    ("event", "rule_jobs", "said"),
    [
        (rule_fired("Daily\n"), "", r"'Daily\n'"),  # once POSTed to /v1/jobs/daily%0A/runs
        ({"job": "daily\n", "slot": SLOT}, "", r"'daily\n'"),
        (rule_fired("\u212aeys"), "", "'\u212aeys'"),  # once lower-cased into the job "keys"
        ({"job": "drain", "slot": SLOT}, "", "reserved"),
        (rule_fired("Read"), "", "reserved"),
        (rule_fired("Nightly"), '{"Nightly": "drain"}', "reserved"),
        ({"job": "daily", "slot": "20260605T000000Z"}, "", "20260605T000000Z"),
        ({"job": "daily", "slot": "0999-06-05T00:00:00Z"}, "", "outside"),
        ({"job": "daily", "slot": "9999-12-31T23:59:59-01:00"}, "", "not a valid time"),
    ],
)
def test_it_alerts_on_a_name_or_slot_it_refuses_and_never_posts(
    monkeypatch: pytest.MonkeyPatch,
    receiver: SlackReceiver,
    event: dict[str, object],
    rule_jobs: str,
    said: str,
) -> None:
    with FaultProxy(default=answer(202, run())) as proxy:
        configure(monkeypatch, APP_URL=proxy.url, SLACK_WEBHOOK_URL=receiver.url, RULE_JOBS=rule_jobs)
        with pytest.raises(UnreadableEvent) as refused:
            handler(event, Context())
    assert proxy.seen == []  # no token minted for it, let alone sent
    assert said in str(refused.value)
    (alert,) = receiver.wait_for(1)
    assert "could not read its event" in alert["text"] and said in alert["text"]


def test_it_keeps_app_url_credentials_out_of_logs_and_slack(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, receiver: SlackReceiver
) -> None:
    app_url = "https://deploy:hunter2@lb.example/batch?api_key=k3y#frag"
    configure(monkeypatch, APP_URL=app_url, SLACK_WEBHOOK_URL=receiver.url)
    with caplog.at_level(logging.DEBUG), pytest.raises(ConfigurationError) as refused:
        handler(DAILY, Context())
    (alert,) = receiver.wait_for(1)
    assert "https://***@lb.example/batch?***" in alert["text"] and "APP_URL" in caplog.text
    for said in (str(refused.value), caplog.text, alert["text"]):
        assert "hunter2" not in said and "k3y" not in said and "frag" not in said


def test_it_keeps_a_redirects_query_out_of_the_alert(
    monkeypatch: pytest.MonkeyPatch, receiver: SlackReceiver
) -> None:
    login = "https://sso.example/login?state=s3cret"
    with FaultProxy(default=answer(302, b"", Location=login)) as proxy:
        configure(monkeypatch, APP_URL=proxy.url, SLACK_WEBHOOK_URL=receiver.url)
        with pytest.raises(TriggerFailed, match="set APP_URL"):
            handler(DAILY, Context())
    (alert,) = receiver.wait_for(1)
    assert "redirect to https://sso.example/login?***" in alert["text"] and "s3cret" not in alert["text"]
