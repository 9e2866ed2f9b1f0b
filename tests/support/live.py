"""A live service for tests: real gunicorn on loopback, a real SQLite file, real tokens."""

from __future__ import annotations

import json
import secrets
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from service.cli import client
from service.config import Settings
from service.dev.devserver import GUNICORN_APP, ServiceProcess
from service.slots import format_slot, parse_slot
from service.web.auth import mint_token

REPO = Path(__file__).resolve().parents[2]


class LiveService(ServiceProcess):
    """gunicorn serving the app with test jobs (`tests.jobs`), plus helpers to talk to it."""

    def __init__(
        self,
        work: Path,
        slack_url: str | None = None,
        *,
        workers: int = 3,
        app: str = GUNICORN_APP,
        **env: str,
    ) -> None:
        self.work = work
        self.secret = secrets.token_urlsafe(36)
        self.ledger_path = work / "ledger.db"
        self.counter_dir = work / "counts"
        self.counter_dir.mkdir(parents=True, exist_ok=True)
        base = {
            "LEDGER_URL": f"sqlite:///{self.ledger_path}",
            "TRIGGER_SECRET": self.secret,
            "BATCH_MODULES": "tests.jobs",
            "BATCH_TIMEZONE": "Asia/Tokyo",
            "ARTEFACT_DIR": str(work / "artefacts"),
            "TEST_COUNTER_DIR": str(self.counter_dir),
            "INSTANCE_ID": "test-1",
            "KILL_GRACE_SECONDS": "1",
            "DRAIN_NOTICE_SECONDS": "0",
            "RUN_DIR": str(work / "run"),
            "PYTHONPATH": str(REPO),
        }
        if slack_url:
            base["SLACK_WEBHOOK_URL"] = slack_url
        base.update(env)
        super().__init__(base, workers=workers, log_path=work / "service.log", app=app)
        self.settings = Settings.from_env(self.env)

    def mint(self, job: str, slot: str | datetime | None = None, **kwargs: Any) -> str:
        """A valid trigger token for `job` and `slot` (default: a slot no other test uses)."""
        when = slot if isinstance(slot, datetime) else parse_slot(slot) if slot else unique_slot()
        return mint_token(self.settings, job, slot=when, **kwargs)

    def read_token(self) -> str:
        """A valid token for the read endpoints."""
        return mint_token(self.settings, "read")

    def post(self, job: str, token: str | None, body: bytes = b"{}") -> client.Answer:
        """POST /v1/jobs/{job}/runs with a bearer token (or none)."""
        return client.request("POST", f"{self.url}/v1/jobs/{job}/runs", token, body)

    def get(self, path: str, token: str | None = None) -> client.Answer:
        """GET a path with a read token (unless one is given)."""
        return client.request("GET", f"{self.url}{path}", token or self.read_token())

    def runs(self, job: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        """Runs from the HTTP API, newest first."""
        return client.list_runs(self.url, self.read_token(), job=job, limit=limit)

    def wait_final(self, run_id: str, timeout: float = 30) -> dict[str, Any]:
        """Wait until the run reaches a final status; return it."""
        return client.wait_for_run(self.url, run_id, self.read_token, timeout)

    def executions(self, job: str) -> list[str]:
        """What the counting test job recorded: one line per time its body ran."""
        path = self.counter_dir / job
        return path.read_text().splitlines() if path.exists() else []

    def log_text(self) -> str:
        """Everything gunicorn and the app wrote."""
        assert self.log_path is not None
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def launcher_pid(service: ServiceProcess) -> int | None:
    """The pid of the instance's launcher (`python -m service.runs.launcher`), if one runs."""
    for pid in service.members():
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"service.runs.launcher" in command:
            return pid
    return None


_counter = iter(range(1, 10**9))


def unique_slot() -> datetime:
    """A slot no other test in this run uses."""
    base = datetime(2030, 1, 1, tzinfo=UTC)
    return base + timedelta(minutes=next(_counter))


def dumps(value: Any) -> bytes:
    """JSON bytes."""
    return json.dumps(value).encode()


__all__ = ["LiveService", "format_slot", "unique_slot"]


def healthz_answers(service: ServiceProcess, deadline: float) -> bool:
    """Whether `/healthz` answers 200 before `deadline` (time.monotonic()), asking again meanwhile."""
    while time.monotonic() < deadline:
        try:
            if client.request("GET", f"{service.url}/healthz", timeout=2).status == 200:
                return True
        except OSError:
            continue
    return False


def scrape_metrics(service: ServiceProcess) -> dict[str, float]:
    """The instance's /metrics as sample name (with labels) → value."""
    with urllib.request.urlopen(f"{service.url}/metrics", timeout=5) as answer:
        assert answer.headers["Content-Type"].startswith("text/plain")
        text = answer.read().decode()
    found = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            found[name] = float(value)
    return found
