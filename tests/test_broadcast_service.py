"""Broadcast jobs and the drain endpoint on the service side: two instances on one shared ledger."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.cli import client
from service.web.auth import mint_drain_token
from tests.support.live import LiveService, format_slot, unique_slot


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[LiveService, LiveService]]:
    """Two instances (distinct INSTANCE_ID, one secret) sharing one SQLite ledger."""
    shared = {"LEDGER_URL": f"sqlite:///{tmp_path / 'shared.db'}", "TRIGGER_SECRET": "b" * 40}
    with (
        LiveService(tmp_path / "a", workers=2, INSTANCE_ID="web-a", **shared) as a,
        LiveService(tmp_path / "b", workers=2, INSTANCE_ID="web-b", **shared) as b,
    ):
        yield a, b


def test_it_runs_a_broadcast_slot_once_on_each_instance(pair: tuple[LiveService, LiveService]) -> None:
    a, b = pair
    slot = unique_slot()
    first = {s.settings.instance_id: s.post("local-cache", s.mint("local-cache", slot)) for s in pair}
    assert {answer.status for answer in first.values()} == {202}
    assert {answer.body["target"] for answer in first.values()} == {"web-a", "web-b"}
    again = a.post("local-cache", a.mint("local-cache", slot))
    assert again.status == 200 and again.body["id"] == first["web-a"].body["id"]
    for instance in pair:
        instance.wait_final(first[instance.settings.instance_id].body["id"])
    answer = a.get(f"/v1/runs?job=local-cache&slot={format_slot(slot)}")
    assert answer.body["coverage"] == {
        "instances": {"web-a": "succeeded", "web-b": "succeeded"},
        "count": 2,
        "succeeded": 2,
    }
    assert len(a.executions("local-cache")) == len(b.executions("local-cache")) == 1
    scopes = {job["name"]: job["scope"] for job in a.get("/v1/jobs").body["jobs"]}
    assert (scopes["local-cache"], scopes["count"]) == ("instance", "fleet")


def test_it_still_runs_a_fleet_job_once_across_both(pair: tuple[LiveService, LiveService]) -> None:
    slot = unique_slot()
    answers = [s.post("count", s.mint("count", slot)) for s in pair]
    assert sorted(answer.status for answer in answers) == [200, 202]


def test_it_drains_on_request_and_reports_its_running_batches(pair: tuple[LiveService, LiveService]) -> None:
    a, b = pair
    running = a.post("slow", a.mint("slow", params={"seconds": 2})).body["id"]
    time.sleep(0.5)
    refused = client.request("POST", f"{a.url}/v1/instance/drain", a.read_token())
    assert (refused.status, refused.body["error"]) == (403, "job_mismatch")
    token = mint_drain_token(a.settings, "web-a")
    elsewhere = client.request("POST", f"{b.url}/v1/instance/drain", token)
    assert (elsewhere.status, elsewhere.body["error"]) == (403, "instance_mismatch")
    drained = client.request("POST", f"{a.url}/v1/instance/drain", token)
    replayed = client.request("POST", f"{a.url}/v1/instance/drain", token)
    assert (replayed.status, replayed.body["error"]) == (401, "token_replayed")
    assert client.request("GET", f"{b.url}/readyz").status == 200
    assert drained.status == 200 and drained.body == {
        "instance": "web-a",
        "draining": True,
        "running": [running],
    }
    assert client.request("GET", f"{a.url}/readyz").status == 503
    claim = a.post("count", a.mint("count"))
    assert (claim.status, claim.body["error"]) == (503, "draining")
    assert a.wait_final(running)["status"] == "succeeded"  # a drain lets running batches finish
    state = a.get("/v1/instance").body
    assert state == {"instance": "web-a", "draining": True, "running": []}
