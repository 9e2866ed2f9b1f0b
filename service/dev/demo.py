"""`batch-trigger demo`: the whole flow on this machine, on the embedded SQLite ledger.

The service runs under gunicorn; recorded EventBridge events go through the real Lambda
handler (`lambda_trigger.handler`) over loopback; a local stand-in for Slack's webhook
captures the alerts.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

from service.cli import client
from service.config import Settings
from service.dev.devserver import ServiceProcess
from service.dev.slack_receiver import SlackReceiver
from service.slots import parse_slot
from service.web.auth import mint_token


def run_demo() -> int:
    """Start gunicorn on SQLite, drive the Lambda handler with recorded events; show the ledger."""
    with tempfile.TemporaryDirectory(prefix="batch-trigger-demo-") as tmp, SlackReceiver() as slack:
        work = Path(tmp)
        secret = secrets.token_urlsafe(32)
        env = {
            "LEDGER_URL": f"sqlite:///{work / 'ledger.db'}",
            "TRIGGER_SECRET": secret,
            "BATCH_TIMEZONE": "Asia/Tokyo",
            "ARTEFACT_DIR": str(work / "artefacts"),
            "SLACK_WEBHOOK_URL": slack.url,
            "INSTANCE_ID": "demo-1",
            "RUN_DIR": str(work / "run"),
            "DRAIN_NOTICE_SECONDS": "0",
        }
        settings = Settings.from_env(env)
        _say(f"starting the service under gunicorn (2 workers) on SQLite {work / 'ledger.db'}")
        with ServiceProcess(env, workers=2, log_path=work / "service.log") as service:
            _say(f"service ready at {service.url}")
            lambda_env(service.url, secret, slack.url)
            ok = _scenario(service.url, settings, slack)
        _say("demo " + ("passed" if ok else "FAILED"))
        return 0 if ok else 1


def _scenario(url: str, settings: Settings, slack: SlackReceiver) -> bool:
    from lambda_trigger.handler import handler

    def read() -> str:
        return mint_token(settings, "read")

    _say("1. EventBridge delivers the Daily event three times (delivery is at-least-once):")
    daily = _event("scheduled-daily")
    answers = [handler(daily, None) for _ in range(3)]
    for n, answer in enumerate(answers, 1):
        _say(f"   delivery {n}: run {answer['run_id']} {'duplicate' if answer['duplicate'] else 'NEW RUN'}")
    run = client.wait_for_run(url, answers[0]["run_id"], read, timeout=30)
    _say(f"   the run ended {run['status']} on {run['instance']}: the 2026-11-23 run, processing 2026-11-22")

    _say("2. EventBridge Scheduler sends the same slot as a direct payload:")
    direct = handler(_event("scheduler-direct"), None)
    _say(f"   run {direct['run_id']} {'duplicate' if direct['duplicate'] else 'NEW RUN'}")

    _say("3. A forged token (another secret) is refused:")
    forged = mint_token(
        Settings.from_env({"TRIGGER_SECRET": secrets.token_urlsafe(32)}),
        "daily",
        slot=parse_slot("2026-11-22T15:00:00Z"),
    )
    refused = client.trigger(url, "daily", forged)
    _say(f"   HTTP {refused.status} {refused.body.get('error')}: {refused.body.get('message')}")

    _say("4. The Monthly rule fires at month end (midnight of the 1st in Tokyo):")
    monthly = handler(_event("scheduled-monthly"), None)
    month_run = client.wait_for_run(url, monthly["run_id"], read, timeout=30)
    _say(f"   run {monthly['run_id']} ended {month_run['status']}: rolled up November 2026")

    _say("5. A rule that names no job (Weekly) is refused; the Lambda alerts Slack and raises:")
    try:
        handler(_event("unknown-rule"), None)
        raised = False
    except Exception as exc:
        raised = True
        _say(f"   handler raised {type(exc).__name__}: {str(exc)[:120]}")
    alerts = slack.wait_for(1, timeout=10)
    _say(f"   Slack received {len(alerts)} alert(s):")
    for text in slack.texts():
        _say("     " + text.replace("\n", "\n     ")[:600])

    runs = client.list_runs(url, read(), job="daily")
    _say(f"ledger: {len(runs)} daily run(s) for slot 2026-11-22T15:00:00Z, executed once")
    return (
        [a["duplicate"] for a in answers] == [False, True, True]
        and direct["duplicate"]
        and run["status"] == month_run["status"] == "succeeded"
        and refused.status == 401
        and raised
        and bool(alerts)
        and len(runs) == 1
    )


def lambda_env(app_url: str, secret: str, slack_url: str) -> None:
    """Configure the Lambda handler in this process as its environment would in AWS."""
    from lambda_trigger.handler import reset_container

    os.environ.update(
        {
            "APP_URL": app_url,
            "TRIGGER_SECRET": secret,
            "SLACK_WEBHOOK_URL": slack_url,
            "RULE_JOBS": json.dumps({"myapp-prod-Daily": "daily"}),
            "DEADLINE_SECONDS": "10",
            "LOG_LEVEL": "CRITICAL",
        }
    )
    reset_container()


def _event(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        resources.files("service.demo_events").joinpath(f"{name}.json").read_text()
    )
    return data


def _say(line: str) -> None:
    print(f"[demo] {line}", flush=True)
