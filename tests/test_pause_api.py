"""Pause and resume over HTTP, in process: who may, what the body may say, what a firing then gets."""

from __future__ import annotations

import json

import pytest
from werkzeug.test import TestResponse

from service.web.auth import mint_token
from tests.support.inprocess import InProcess, error_of
from tests.support.live import unique_slot


def pause(inprocess: InProcess, body: object, job: str = "count", token: str | None = None) -> TestResponse:
    """POST /v1/jobs/JOB/pause with a fresh token of the job (unless one is given)."""
    token = token if token is not None else mint_token(inprocess.settings, job, issuer="cli:alice")
    return inprocess.post(f"/v1/jobs/{job}/pause", token, json.dumps(body).encode())


def test_it_pauses_with_who_why_and_until_then_answers_firings_as_skipped(inprocess: InProcess) -> None:
    answer = pause(inprocess, {"reason": "migration", "until": "2999-01-01T00:00:00Z"})
    assert answer.status_code == 200
    assert answer.get_json()["pause"] == {
        "job": "count",
        "paused_at": answer.get_json()["pause"]["paused_at"],
        "paused_by": "cli:alice",
        "reason": "migration",
        "until": "2999-01-01T00:00:00Z",
    }
    slot = unique_slot()
    fired = inprocess.post("/v1/jobs/count/runs", mint_token(inprocess.settings, "count", slot=slot))
    body = fired.get_json()
    assert fired.status_code == 200
    assert (body["paused"], body["duplicate"], body["status"]) == (True, False, "skipped")
    assert body["error"] == "paused by cli:alice until 2999-01-01T00:00:00Z: migration"
    listed = {j["name"]: j for j in inprocess.get("/v1/jobs", inprocess.read_token()).get_json()["jobs"]}
    assert listed["count"]["paused"] is True and listed["slow"]["paused"] is False
    resumed = inprocess.post("/v1/jobs/count/resume", mint_token(inprocess.settings, "count"))
    assert resumed.get_json() == {"job": "count", "paused": False, "resumed": True}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"reason": 7}, (400, "malformed")),
        ({"reason": "x" * 501}, (400, "malformed")),
        ({"until": "tomorrow"}, (400, "malformed")),
        ({"until": "2026-11-22T15:00"}, (400, "malformed")),
        ({"until": "2001-01-01T00:00:00Z"}, (409, "until_passed")),
        ([1, 2], (400, "malformed")),
    ],
)
def test_it_refuses_a_bad_pause_body_in_one_line(
    inprocess: InProcess, body: object, expected: tuple[int, str]
) -> None:
    assert error_of(pause(inprocess, body)) == expected


def test_it_lets_only_a_single_use_token_of_the_job_pause_it(inprocess: InProcess) -> None:
    assert error_of(pause(inprocess, {}, token=inprocess.read_token())) == (403, "job_mismatch")
    other_job = mint_token(inprocess.settings, "slow")
    assert error_of(pause(inprocess, {}, token=other_job)) == (403, "job_mismatch")
    assert error_of(pause(inprocess, {}, token=inprocess.drain_token())) == (403, "job_mismatch")
    assert error_of(pause(inprocess, {}, job="nope")) == (404, "unknown_job")
    assert error_of(inprocess.post("/v1/jobs/count/pause", None, b"{}")) == (401, "token_missing")
    token = mint_token(inprocess.settings, "count")
    assert pause(inprocess, {}, token=token).status_code == 200
    assert error_of(pause(inprocess, {}, token=token)) == (401, "token_replayed")


def test_it_keeps_a_reason_no_ledger_could_store_as_text(inprocess: InProcess) -> None:
    answer = pause(inprocess, {"reason": "nul\u0000 and \ud800 lone"})
    assert answer.status_code == 200 and answer.get_json()["pause"]["reason"] == "nul and ? lone"
