"""The README's "Schedules as code", verbatim: from one `@job(..., schedule=...)` to a live schedule.

The job module is the README's Python block; the commands are its bash block, run by bash
against the real service under gunicorn. EventBridge Scheduler is emulated by moto's server
(the AWS API cannot be reached from tests; the CLI's boto3 reaches moto via AWS_ENDPOINT_URL).
The schedule it creates is then fired as the Scheduler fires it: its Input, placeholders
filled, through the real Lambda handler.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from lambda_trigger.handler import handler
from tests.lambda_support.lambda_env import Context, configure
from tests.support.live import REPO, LiveService
from tests.support.slack import SlackReceiver

VENV_BIN = Path(sys.executable).parent
STACK = {  # what the stack's outputs hold once deployed (deploy/template.yaml)
    "TRIGGER_FUNCTION_ARN": "arn:aws:lambda:us-east-1:123456789012:function:batch-trigger-TriggerFunction",
    "SCHEDULER_ROLE_ARN": "arn:aws:iam::123456789012:role/batch-trigger-SchedulerRole",
    "SCHEDULE_DEAD_LETTER_ARN": "arn:aws:sqs:us-east-1:123456789012:batch-trigger-FailureQueue",
}
AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def _block(name: str, language: str) -> str:
    readme = (REPO / "README.md").read_text()
    match = re.search(rf"<!-- {name}:.*?-->\s*```{language}\n(.*?)```\s*<!-- /{name} -->", readme, re.S)
    assert match, f"README has no {name} block"
    return match.group(1)


@pytest.fixture
def scheduler() -> Iterator[str]:
    """moto's EventBridge Scheduler as a local HTTP server; its URL."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def test_it_takes_the_readmes_job_to_a_live_schedule_verbatim(
    tmp_path: Path, scheduler: str, slack: SlackReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = tmp_path / "app" / "myapp"
    app.mkdir(parents=True)
    (app / "__init__.py").write_text("")
    (app / "reports.py").write_text(_block("schedules-job", "python"))
    path = f"{REPO}:{app.parent}"
    env = {"BATCH_MODULES": "myapp.reports", "PYTHONPATH": path, "BATCH_TIMEZONE": "UTC"}
    with LiveService(tmp_path / "service", slack.url, workers=1, **env) as live:
        shell = {
            "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": str(tmp_path),
            "PYTHONPATH": path,
            "TRIGGER_SECRET": live.secret,
            "BATCH_TRIGGER_URL": live.url,
            "AWS_ENDPOINT_URL": scheduler,
            **AWS,
            **STACK,
        }
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", _block("schedules", "bash")],
            env=shell, capture_output=True, text=True, timeout=180,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        out = done.stdout
        assert re.search(r"^nightly-report\s+cron\(30 1 \* \* \? \*\)\s+America/New_York\s+\S+", out, re.M)
        first_plan, rest = out.split("Plan: ", 1)
        assert "+ create nightly-report" in first_plan and "expression: cron(30 1 * * ? *)" in first_plan
        assert rest.startswith("3 to create, 0 to update, 0 to delete.")  # with the shipped daily, monthly
        assert "Apply complete" in rest
        assert out.rstrip().endswith("No changes: the schedules match the registry.")

        client = boto3.client(
            "scheduler",
            endpoint_url=scheduler,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        live_schedule = client.get_schedule(GroupName="batch-trigger", Name="nightly-report")
        assert live_schedule["ScheduleExpressionTimezone"] == "America/New_York"
        assert live_schedule["Target"]["Arn"] == STACK["TRIGGER_FUNCTION_ARN"]
        # It fires: 01:30 New York on the night the clocks go back, as the Scheduler names it.
        payload = live_schedule["Target"]["Input"]
        payload = payload.replace("<aws.scheduler.scheduled-time>", "2026-11-01T05:30:00Z")
        payload = payload.replace("<aws.scheduler.execution-id>", "4f3c1e2a-exec")
        configure(monkeypatch, APP_URL=live.url, TRIGGER_SECRET=live.secret, SLACK_WEBHOOK_URL=slack.url)
        result = handler(json.loads(payload), Context())
        assert (result["job"], result["slot"]) == ("nightly-report", "2026-11-01T05:30:00Z")
        assert live.wait_final(result["run_id"])["status"] == "succeeded"
