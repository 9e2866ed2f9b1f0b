"""Sample events, a Lambda context stand-in, and environment set-up for handler tests."""

from __future__ import annotations

import json
import time
import uuid
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from lambda_trigger import handler

REPO = Path(__file__).resolve().parents[2]
# The repository's own copies of the sample EventBridge payloads (package data, also used by the
# demo): a clone must pass its tests with nothing beside it.
EVENTS = resources.files("service.demo_events")
SECRET = "lambda-test-secret-0123456789abcdef0123456789abcdef"


def load_event(name: str) -> dict[str, Any]:
    """One of the sample events, e.g. `load_event("scheduled-daily")`."""
    data: dict[str, Any] = json.loads(EVENTS.joinpath(f"{name}.json").read_text())
    return data


class Context:
    """The two things the handler reads from Lambda's context object (which we do not own)."""

    def __init__(self, remaining_seconds: float = 30.0) -> None:
        self.aws_request_id = str(uuid.uuid4())
        self._end = time.monotonic() + remaining_seconds

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds until this invocation would be stopped."""
        return max(0, int((self._end - time.monotonic()) * 1000))


def configure(monkeypatch: pytest.MonkeyPatch, **env: str) -> None:
    """Set the Lambda's environment (on top of fast test defaults) and start a fresh container."""
    defaults = {
        "TRIGGER_SECRET": SECRET,
        "ATTEMPT_TIMEOUT_SECONDS": "5",
        "DEADLINE_SECONDS": "20",
        "ALERT_RESERVE_SECONDS": "2",
        "BACKOFF_BASE_SECONDS": "0.05",
        "BACKOFF_MAX_SECONDS": "0.4",
    }
    for name in (
        "TRIGGER_SECRET_ARN",
        "SLACK_WEBHOOK_URL",
        "SLACK_WEBHOOK_SECRET_ARN",
        "RULE_JOBS",
        "TRIGGER_KID",
        "TRIGGER_AUDIENCE",
        "TRIGGER_ALGORITHM",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in (defaults | env).items():
        if value == "":
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    handler.reset_container()
    monkeypatch.setattr(handler, "_trigger", None)  # and forget it again after the test
