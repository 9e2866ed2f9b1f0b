"""The in-process tier: the real app (`create_app`) on a real SQLite file, driven by Flask's test client.

For test matrices (every token failure, every malformed query): no gunicorn, no sockets, the
same code path from the WSGI call down to the ledger file.
"""

from __future__ import annotations

import re
import secrets
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from service.config import Settings
from service.web.auth import mint_drain_token, mint_token
from service.web.factory import create_app

INSTANCE = "test-1"


class InProcess:
    """The app, its settings and test client, and helpers that mint tokens for it."""

    def __init__(self, work: Path, **env: str) -> None:
        self.secret = secrets.token_urlsafe(36)
        self.env = {
            "LEDGER_URL": f"sqlite:///{work / 'ledger.db'}",
            "TRIGGER_SECRET": self.secret,
            "BATCH_MODULES": "tests.jobs",
            "INSTANCE_ID": INSTANCE,
            "RUN_DIR": str(work / "run"),
            "ARTEFACT_DIR": str(work / "artefacts"),
        } | env
        self.settings = Settings.from_env(self.env)
        self.app: Flask = create_app(self.settings)
        self.client: FlaskClient = self.app.test_client()

    def read_token(self) -> str:
        """A token that reads everything (`sub` = `read`)."""
        return mint_token(self.settings, "read")

    def drain_token(self, instance: str = INSTANCE) -> str:
        """A single-use drain token for `instance`."""
        return mint_drain_token(self.settings, instance)

    def signed(self, **claims: Any) -> str:
        """An HS256 token with valid defaults for a read, overridden (None removes a claim)."""
        now = int(time.time())
        base: dict[str, Any] = {"aud": "batch-trigger", "sub": "read", "iat": now, "exp": now + 60}
        base["jti"] = uuid.uuid4().hex
        merged = {k: v for k, v in (base | claims).items() if v is not None}
        return jwt.encode(merged, self.secret, algorithm="HS256")

    def get(self, path: str, token: str | None = None, **headers: str) -> TestResponse:
        """GET with a bearer token (none when `token` is None)."""
        return self.client.get(path, headers=_auth(token) | headers)

    def post(self, path: str, token: str | None = None, body: bytes = b"", **headers: str) -> TestResponse:
        """POST a body with a bearer token (none when `token` is None)."""
        return self.client.post(path, data=body, headers=_auth(token) | headers)

    def counted(self, metric: str, **labels: str) -> float:
        """The value of a counter in this process's /metrics (0 when it has no such sample yet)."""
        text = self.client.get("/metrics").get_data(as_text=True)
        wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in text.splitlines():
            match = re.fullmatch(rf"{metric}\{{(.*)\}} (\S+)", line)
            if match and ",".join(sorted(match[1].split(","))) == wanted:
                return float(match[2])
        return 0.0


def _auth(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token is not None else {}


@pytest.fixture
def inprocess(tmp_path: Path) -> Iterator[InProcess]:
    """A fresh app on a fresh SQLite file, instance `test-1`, with the test jobs."""
    yield InProcess(tmp_path)


def error_of(answer: TestResponse) -> tuple[int, str]:
    """(status, contract error code) of an answer; the body must be the contract's JSON error."""
    body = answer.get_json(silent=True)
    assert isinstance(body, dict) and set(body) >= {"error", "message"}, answer.get_data(as_text=True)[:300]
    return answer.status_code, str(body["error"])
