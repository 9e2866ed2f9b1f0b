"""Metrics summed across gunicorn workers, and logs as JSON lines without secrets, under gunicorn."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.cli import client
from tests.support.live import LiveService, scrape_metrics, unique_slot
from tests.support.slack import SlackReceiver


@pytest.fixture(scope="module")
def instance(tmp_path_factory: pytest.TempPathFactory, slack: SlackReceiver) -> Iterator[LiveService]:
    """A fresh instance (4 workers) with a fast keeper, so its counters start at zero."""
    with LiveService(
        tmp_path_factory.mktemp("metrics"), slack.url, workers=4, HEARTBEAT_SECONDS="1", LEASE_SECONDS="5"
    ) as live:
        yield live


def test_it_sums_trigger_answers_and_runs_across_all_workers(instance: LiveService) -> None:
    ids = [instance.post("count", instance.mint("count")).body["id"] for _ in range(6)]
    slot = unique_slot()
    for _ in range(3):
        instance.post("count", instance.mint("count", slot))  # one new run, two duplicates
    for _ in range(2):
        instance.post("count", "not-a-token")
    instance.post("boom", instance.mint("boom"))
    instance.post("nope", instance.mint("nope"))
    for run_id in ids:
        instance.wait_final(run_id)
    expected = {
        'batch_trigger_trigger_answers_total{code="202"}': 8.0,
        'batch_trigger_trigger_answers_total{code="200"}': 2.0,
        'batch_trigger_trigger_answers_total{code="401"}': 2.0,
        'batch_trigger_trigger_answers_total{code="404"}': 1.0,
        'batch_trigger_runs_total{job="count",status="succeeded"}': 7.0,
        'batch_trigger_runs_total{job="boom",status="failed"}': 1.0,
        'batch_trigger_run_duration_seconds_count{job="count"}': 7.0,
    }
    deadline = time.monotonic() + 20
    while True:  # the keeper counts finished runs on its next sweep
        scrapes = [scrape_metrics(instance) for _ in range(8)]  # answered by different workers
        seen = [{name: s.get(name) for name in expected} for s in scrapes]
        if all(s == expected for s in seen) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert all(s == expected for s in seen), seen[-1]


def test_it_writes_every_log_line_as_json_without_secrets_or_tokens(instance: LiveService) -> None:
    token = instance.mint("boom")
    instance.wait_final(instance.post("boom", token).body["id"])
    instance.post("count", "garbage")
    client.request("GET", f"{instance.url}/readyz")
    lines = [line for line in instance.log_text().splitlines() if line.strip()]
    assert len(lines) > 10
    for line in lines:
        entry = json.loads(line)
        assert {"ts", "level", "message"} <= set(entry), line
    text = "\n".join(lines)
    assert instance.secret not in text and token not in text and "eyJ" not in text
    batch_lines = [json.loads(line) for line in lines if '"batch_trigger.runner"' in line]
    assert any(
        entry.get("run_id")
        and entry.get("job") == "boom"
        and entry.get("slot")
        and entry.get("instance") == "test-1"
        for entry in batch_lines
    )


def test_it_keeps_the_metrics_directory_inside_the_run_dir(instance: LiveService) -> None:
    assert list((Path(instance.env["RUN_DIR"]) / "test-1" / "metrics").glob("*.db"))
