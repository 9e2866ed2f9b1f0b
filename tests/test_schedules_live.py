"""`jobs`, `pause`/`resume` and `backfill` against the real service under gunicorn, on both ledgers.

The CLI runs as operators run it (a subprocess); the Lambda is the real handler; Slack is a
local HTTP server. The jobs are tests/scheduled_jobs.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from lambda_trigger.handler import handler
from service.slots import format_slot, parse_slot
from tests.lambda_support.lambda_env import Context, configure
from tests.support.live import LiveService
from tests.support.slack import SlackReceiver

VENV_BIN = Path(sys.executable).parent


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, slack: SlackReceiver
) -> Iterator[LiveService]:
    """The service with the scheduled test jobs, on each ledger; the keeper sweeps every second."""
    env = {
        "BATCH_MODULES": "tests.scheduled_jobs",
        "BATCH_TIMEZONE": "Europe/London",
        "HEARTBEAT_SECONDS": "1",
        "LEASE_SECONDS": "5",
    }
    database = None
    if request.param == "postgres":
        server = request.getfixturevalue("postgres_server")
        server.start()
        database = env["LEDGER_URL"] = server.create_database()
    work = tmp_path_factory.mktemp(f"schedules-{request.param}")
    with LiveService(work, slack.url, workers=2, **env) as svc:
        yield svc
    if database is not None:
        server.drop_database(database)


def cli(live: LiveService, *args: str) -> subprocess.CompletedProcess[str]:
    """`batch-trigger ARGS` as an operator runs it, against the live service."""
    env = {
        "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "TRIGGER_SECRET": live.secret,
        "BATCH_TRIGGER_URL": live.url,
        "HOME": str(live.work),
    }
    return subprocess.run(
        [str(VENV_BIN / "batch-trigger"), *args], env=env, capture_output=True, text=True, timeout=120
    )


def jobs(live: LiveService) -> dict[str, dict[str, Any]]:
    """`batch-trigger jobs --json`, by name."""
    done = cli(live, "jobs", "--json")
    assert done.returncode == 0, done.stderr
    return {job["name"]: job for job in json.loads(done.stdout)}


def fire(
    monkeypatch: pytest.MonkeyPatch, live: LiveService, slack: SlackReceiver, job: str, slot: str
) -> dict[str, Any]:
    """What EventBridge Scheduler's firing does: the real Lambda handler with its direct payload."""
    configure(monkeypatch, APP_URL=live.url, TRIGGER_SECRET=live.secret, SLACK_WEBHOOK_URL=slack.url)
    result: dict[str, Any] = handler({"job": job, "slot": slot, "event_id": f"exec-{slot}"}, Context())
    return result


def notice(slack: SlackReceiver, text: str, since: int, timeout: float = 30) -> str:
    """Wait (with a deadline) for a Slack message after the first `since` containing `text`."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        found = [t for t in slack.texts()[since:] if text in t]
        if found:
            return found[-1]
        slack.wait_for(len(slack.messages) + 1, timeout=max(0.0, end - time.monotonic()))
    raise AssertionError(f"no Slack message with {text!r} in {slack.texts()[since:]}")


def slots_run(live: LiveService, job: str) -> list[str]:
    """The slots the job's body ran for, in order (from what it recorded)."""
    return [format_slot(datetime.fromisoformat(line.split()[1])) for line in live.executions(job)]


def test_it_lists_every_job_with_its_schedule_next_due_time_and_last_runs(live: LiveService) -> None:
    slot = "2026-05-04T12:00:00Z"
    triggered = cli(live, "trigger", "adhoc", "--slot", slot, "--wait")
    assert triggered.returncode == 0, triggered.stderr
    listed = jobs(live)
    nightly, hourly, adhoc = listed["nightly"], listed["hourly"], listed["adhoc"]
    assert (nightly["schedule"], nightly["timezone"]) == ("30 1 * * *", "America/New_York")
    assert nightly["aws_expression"] == "cron(30 1 * * ? *)"
    due = parse_slot(nightly["next_due"])
    local = datetime.fromisoformat(nightly["next_due_local"])
    assert local == due and local.strftime("%H:%M") == "01:30"
    assert timedelta(0) < due - datetime.now(UTC) <= timedelta(hours=25)
    assert hourly["timezone"] == "Europe/London" and parse_slot(hourly["next_due"]).minute == 0
    assert adhoc["schedule"] is None and adhoc["next_due"] is None
    assert adhoc["last_run"]["status"] == "succeeded" and adhoc["last_success"]["slot"] == slot
    assert not any(job["paused"] for job in listed.values())
    table = cli(live, "jobs").stdout.splitlines()
    assert table[0].split()[:4] == ["JOB", "SCHEDULE", "TIMEZONE", "NEXT"]
    assert any(line.startswith("nightly ") and "America/New_York" in line for line in table)


def test_it_pauses_and_resumes_a_job_and_the_lambda_takes_a_paused_answer_as_success(
    monkeypatch: pytest.MonkeyPatch, live: LiveService, slack: SlackReceiver
) -> None:
    start = len(slack.messages)
    paused = cli(live, "pause", "hourly", "--reason", "db migration")
    assert paused.returncode == 0, paused.stdout + paused.stderr
    pause = json.loads(paused.stdout)["pause"]
    assert pause["paused_by"].startswith("cli:") and pause["reason"] == "db migration"
    assert pause["until"] is None
    notice(slack, "job `hourly` paused by cli:", start)
    assert jobs(live)["hourly"]["paused"] is True

    before = len(slack.messages)
    slot = "2026-06-01T10:00:00Z"
    answer = fire(monkeypatch, live, slack, "hourly", slot)
    assert (answer["status"], answer["duplicate"]) == ("skipped", False)  # returned, not raised
    assert len(slack.messages) == before  # and no alert from the Lambda
    (run,) = [r for r in live.runs("hourly") if r["slot"] == slot]
    assert run["status"] == "skipped" and run["error"].endswith(": db migration")
    assert fire(monkeypatch, live, slack, "hourly", slot)["duplicate"] is True  # a redelivery
    assert "hourly" not in [line.split()[0] for line in live.executions("hourly")]

    resumed = cli(live, "resume", "hourly")
    assert resumed.returncode == 0 and json.loads(resumed.stdout)["resumed"] is True
    notice(slack, "job `hourly` resumed by cli:", start)
    later = fire(monkeypatch, live, slack, "hourly", "2026-06-01T11:00:00Z")
    assert live.wait_final(later["run_id"])["status"] == "succeeded"
    again = cli(live, "resume", "hourly")
    assert again.returncode == 0 and json.loads(again.stdout)["resumed"] is False


def test_it_resumes_by_itself_at_until_and_says_so_once(live: LiveService, slack: SlackReceiver) -> None:
    start = len(slack.messages)
    until = format_slot((datetime.now(UTC) + timedelta(seconds=3)).replace(microsecond=0))
    paused = cli(live, "pause", "adhoc", "--until", until, "--reason", "quiet")
    assert paused.returncode == 0 and json.loads(paused.stdout)["pause"]["until"] == until
    text = notice(slack, "job `adhoc` resumed by the end of its pause", start)
    assert "paused since" in text
    assert jobs(live)["adhoc"]["paused"] is False
    answer = live.post("adhoc", live.mint("adhoc"))
    assert answer.status == 202, answer.body
    assert sum("job `adhoc` resumed" in t for t in slack.texts()[start:]) == 1


def test_it_refuses_a_pause_without_the_jobs_token(live: LiveService) -> None:
    url = f"{live.url}/v1/jobs/nightly/pause"
    from service.cli import client

    assert client.request("POST", url, live.read_token(), b"{}").status == 403
    token = live.mint("nightly")
    past = client.request("POST", url, token, b'{"until": "2020-01-01T00:00:00Z"}')
    assert (past.status, past.body["error"]) == (409, "until_passed")
    garbled = client.request("POST", url, live.mint("nightly"), b'{"until": "tomorrow"}')
    assert (garbled.status, garbled.body["error"]) == (400, "malformed")
    assert client.request("POST", f"{live.url}/v1/jobs/nope/pause", live.mint("nope"), b"{}").status == 404


def test_it_backfills_the_missing_slots_across_a_dst_change_once(live: LiveService) -> None:
    # 2026-11-01: New York falls back, and 01:30 happens twice; the Scheduler fires it once.
    assert cli(live, "trigger", "nightly", "--slot", "2026-10-31T05:30:00Z", "--wait").returncode == 0
    assert cli(live, "pause", "nightly", "--reason", "skip one").returncode == 0
    assert cli(live, "trigger", "nightly", "--slot", "2026-11-02T06:30:00Z").returncode == 0  # skipped
    assert cli(live, "resume", "nightly").returncode == 0
    window = ["--from", "2026-10-30T00:00:00Z", "--to", "2026-11-03T12:00:00Z"]

    dry = cli(live, "backfill", "nightly", *window, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines() == [
        "2026-10-30T05:30:00Z  missing    would trigger",
        "2026-10-31T05:30:00Z  succeeded  skip",
        "2026-11-01T05:30:00Z  missing    would trigger",
        "2026-11-02T06:30:00Z  retry      would trigger",
        "2026-11-03T06:30:00Z  missing    would trigger",
        "5 slot(s) in range, 1 already succeeded, 4 to run",
    ]
    assert slots_run(live, "nightly") == ["2026-10-31T05:30:00Z"]  # a dry run runs nothing

    done = cli(live, "backfill", "nightly", *window)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "backfill: 4 succeeded, 0 did not" in done.stdout
    # oldest first, one at a time: each run ended before the next began
    assert slots_run(live, "nightly") == [
        "2026-10-31T05:30:00Z",
        "2026-10-30T05:30:00Z",
        "2026-11-01T05:30:00Z",
        "2026-11-02T06:30:00Z",
        "2026-11-03T06:30:00Z",
    ]

    again = cli(live, "backfill", "nightly", *window)
    assert again.returncode == 0 and "5 slot(s) in range, 5 already succeeded, 0 to run" in again.stdout
    assert len(slots_run(live, "nightly")) == 5


def test_it_backfills_a_job_without_schedule_only_with_every_or_slots(live: LiveService) -> None:
    window = ["--from", "2026-01-01T00:00:00Z", "--to", "2026-01-03T23:59:00Z"]
    refused = cli(live, "backfill", "adhoc", *window)
    assert refused.returncode == 1 and "adhoc has no schedule: name its slots with --every" in refused.stderr
    every = cli(live, "backfill", "adhoc", *window, "--every", "0 12 * * *", "--concurrency", "2")
    assert every.returncode == 0 and "backfill: 3 succeeded, 0 did not" in every.stdout, every.stderr
    slots = ["--slot", "2026-01-02T12:00:00Z", "--slot", "2026-01-03T18:00:00Z"]
    picked = cli(live, "backfill", "adhoc", *window, *slots)
    assert picked.returncode == 0 and "2 slot(s) in range, 1 already succeeded, 1 to run" in picked.stdout
    assert sorted(s for s in slots_run(live, "adhoc") if s.startswith("2026-01")) == [
        "2026-01-01T12:00:00Z",
        "2026-01-02T12:00:00Z",
        "2026-01-03T12:00:00Z",
        "2026-01-03T18:00:00Z",
    ]
