"""lambda_trigger's secrets: Secrets Manager read once per warm container; no boto3 without an ARN.

Secrets Manager is moto's in-process emulation of the AWS API (`mock_aws`), reached through
the real boto3 client; the read count comes from botocore's own parameter-build event.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import boto3
import jwt
import pytest
from moto import mock_aws

from lambda_trigger import SecretUnavailable
from lambda_trigger.handler import handler, reset_container
from tests.lambda_support.lambda_env import REPO, SECRET, Context, configure, load_event
from tests.lambda_support.proxy import FaultProxy, answer
from tests.support.slack import SlackReceiver

DAILY = load_event("scheduled-daily")
RUN = json.dumps({"id": "7", "job": "daily", "slot": DAILY["time"], "status": "accepted"}).encode()


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Emulated AWS (moto); yields the list of secret ids every GetSecretValue call asked for."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    reads: list[str] = []
    with mock_aws():
        boto3.setup_default_session()  # a fresh default session, so the hook below is ours alone
        boto3.DEFAULT_SESSION.events.register(  # type: ignore[union-attr]
            "before-parameter-build.secrets-manager.GetSecretValue",
            lambda params, **_: reads.append(params["SecretId"]),
        )
        yield reads
    boto3.DEFAULT_SESSION = None


def create_secret(name: str, value: str, region: str = "eu-west-1") -> str:
    """Store a secret in the emulated Secrets Manager; return its ARN."""
    client = boto3.client("secretsmanager", region_name=region)
    return str(client.create_secret(Name=name, SecretString=value)["ARN"])


def test_it_reads_the_trigger_secret_once_per_warm_container(
    monkeypatch: pytest.MonkeyPatch, aws: list[str]
) -> None:
    arn = create_secret("batch-trigger/trigger-secret", SECRET)
    with FaultProxy(default=answer(202, RUN)) as proxy:
        configure(monkeypatch, APP_URL=proxy.url, TRIGGER_SECRET="", TRIGGER_SECRET_ARN=arn)
        for _ in range(5):
            handler(DAILY, Context())
        assert aws == [arn]
        reset_container()  # a new container reads it again, once
        handler(DAILY, Context())
    assert aws == [arn, arn]
    for seen in proxy.seen:
        token = seen.headers["Authorization"].removeprefix("Bearer ")
        assert jwt.decode(token, SECRET, algorithms=["HS256"], audience="batch-trigger")


def test_it_reads_the_slack_webhook_from_its_secret_only_when_alerting(
    monkeypatch: pytest.MonkeyPatch, aws: list[str]
) -> None:
    with SlackReceiver() as slack:
        arn = create_secret("batch-trigger/slack-webhook", slack.url, region="ap-northeast-1")
        unknown = json.dumps({"error": "unknown_job", "message": "no job 'weekly'"}).encode()
        with FaultProxy() as proxy:
            proxy.plan(answer(202, RUN), answer(404, unknown), answer(404, unknown))
            configure(monkeypatch, APP_URL=proxy.url, SLACK_WEBHOOK_SECRET_ARN=arn)
            handler(DAILY, Context())
            assert aws == []
            for _ in range(2):
                with pytest.raises(Exception, match="unknown_job"):
                    handler(load_event("unknown-rule"), Context())
        assert len(slack.wait_for(2)) == 2 and aws == [arn]


def test_it_alerts_and_raises_when_the_secret_cannot_be_read(
    monkeypatch: pytest.MonkeyPatch, aws: list[str]
) -> None:
    missing = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:batch-trigger/gone-AbCdEf"
    with SlackReceiver() as slack, FaultProxy() as proxy:
        configure(
            monkeypatch,
            APP_URL=proxy.url,
            TRIGGER_SECRET="",
            TRIGGER_SECRET_ARN=missing,
            SLACK_WEBHOOK_URL=slack.url,
        )
        with pytest.raises(SecretUnavailable, match="ResourceNotFoundException"):
            handler(DAILY, Context())
        assert proxy.seen == [] and "cannot sign tokens" in slack.wait_for(1)[0]["text"]


def test_it_leaves_boto3_unimported_without_an_arn() -> None:
    probe = (
        "import json, sys\n"
        "import lambda_trigger.handler as h\n"
        "after_import = sorted(m for m in ('boto3', 'botocore', 'slack_sdk') if m in sys.modules)\n"
        "h.handler(json.loads(sys.argv[1]), None)\n"
        "after_call = sorted(m for m in ('boto3', 'botocore', 'slack_sdk') if m in sys.modules)\n"
        "print(json.dumps([after_import, after_call, 'service' in sys.modules]))\n"
    )
    with FaultProxy(default=answer(202, RUN)) as proxy:
        env = {
            "PATH": os.environ.get("PATH", ""),
            "PYTHONPATH": str(REPO),
            "APP_URL": proxy.url,
            "TRIGGER_SECRET": SECRET,
        }
        done = subprocess.run(
            [sys.executable, "-c", probe, json.dumps(DAILY)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
    assert json.loads(done.stdout) == [[], [], False]
    assert len(proxy.seen) == 1
