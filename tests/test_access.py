"""Who may read and drain what, in the in-process tier: read scope by `sub`, the drain token contract."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from service.errors import ConfigError
from service.jobs import job
from service.ledger import ClaimRequest, Run
from service.slots import utcnow
from service.web.auth import mint_token
from tests.support.inprocess import InProcess, error_of

SLOT = datetime(2031, 1, 1, tzinfo=UTC)


def _run(app: InProcess, job_name: str) -> Run:
    """A run of `job_name`, claimed straight in the app's ledger (nothing is launched)."""
    ledger = app.app.extensions["batch_trigger"].ledger
    request = ClaimRequest(job=job_name, slot=SLOT, trigger="manual", instance="test-1")
    return ledger.claim(request, utcnow()).run


def test_it_lets_a_read_token_read_every_job_and_the_instance(inprocess: InProcess) -> None:
    count, slow = _run(inprocess, "count"), _run(inprocess, "slow")
    token = inprocess.read_token()
    listed = inprocess.get("/v1/runs", token).get_json()["runs"]
    assert {r["id"] for r in listed} == {count.id, slow.id}
    assert inprocess.get(f"/v1/runs/{slow.id}", token).status_code == 200
    assert inprocess.get("/v1/jobs", token).status_code == 200
    assert inprocess.get("/v1/instance", token).get_json()["instance"] == "test-1"


def test_it_lets_a_job_token_read_that_jobs_runs_only(inprocess: InProcess) -> None:
    count, slow = _run(inprocess, "count"), _run(inprocess, "slow")
    token = mint_token(inprocess.settings, "count", slot=SLOT)
    own = inprocess.get("/v1/runs?job=count", token)
    assert own.status_code == 200 and [r["id"] for r in own.get_json()["runs"]] == [count.id]
    assert inprocess.get(f"/v1/runs/{count.id}", token).status_code == 200
    for path in ("/v1/runs", "/v1/runs?job=slow", "/v1/runs?job=", f"/v1/runs/{slow.id}", "/v1/jobs"):
        assert error_of(inprocess.get(path, token)) == (403, "job_mismatch"), path
    assert error_of(inprocess.get("/v1/instance", token)) == (403, "job_mismatch")


def test_it_lets_a_drain_token_read_its_own_instance_only(inprocess: InProcess) -> None:
    run = _run(inprocess, "count")
    token = inprocess.drain_token()
    assert inprocess.get("/v1/instance", token).get_json()["instance"] == "test-1"
    for path in ("/v1/runs", "/v1/runs?job=count", f"/v1/runs/{run.id}", "/v1/jobs"):
        assert error_of(inprocess.get(path, token)) == (403, "job_mismatch"), path
    other = inprocess.drain_token("i-other")
    assert error_of(inprocess.get("/v1/instance", other)) == (403, "instance_mismatch")
    no_instance = inprocess.signed(sub="drain")
    assert error_of(inprocess.get("/v1/instance", no_instance)) == (401, "token_invalid")


def test_it_drains_once_per_drain_token(inprocess: InProcess) -> None:
    token = inprocess.drain_token()
    drained = inprocess.post("/v1/instance/drain", token)
    assert drained.status_code == 200 and drained.get_json()["draining"] is True
    assert error_of(inprocess.post("/v1/instance/drain", token)) == (401, "token_replayed")
    assert inprocess.post("/v1/instance/drain", inprocess.drain_token()).status_code == 200


DRAIN_REFUSALS = {
    "another instance": (lambda a: a.drain_token("i-0another"), (403, "instance_mismatch")),
    "no instance claim": (lambda a: a.signed(sub="drain"), (401, "token_invalid")),
    "no jti": (lambda a: a.signed(sub="drain", instance="test-1", jti=None), (401, "token_invalid")),
    "a read token": (lambda a: a.read_token(), (403, "job_mismatch")),
    "a job's token": (lambda a: mint_token(a.settings, "count", slot=SLOT), (403, "job_mismatch")),
    "no token": (lambda a: None, (401, "token_missing")),
}


@pytest.mark.parametrize("case", sorted(DRAIN_REFUSALS))
def test_it_refuses_to_drain_without_a_drain_token_for_this_instance(inprocess: InProcess, case: str) -> None:
    make, expected = DRAIN_REFUSALS[case]
    assert error_of(inprocess.post("/v1/instance/drain", make(inprocess))) == expected
    assert inprocess.get("/v1/instance", inprocess.read_token()).get_json()["draining"] is False


def test_it_answers_404_for_a_run_id_that_no_run_has(inprocess: InProcess) -> None:
    for run_id in ("0" * 32, "nope", "%F0%9F%92%A9", "a%00b", "x" * 300):
        assert error_of(inprocess.get(f"/v1/runs/{run_id}", inprocess.read_token())) == (404, "not_found")


@pytest.mark.parametrize("name", ["read", "drain"])
def test_it_refuses_to_register_a_job_under_a_reserved_name(name: str) -> None:
    with pytest.raises(ConfigError, match="reserved"):
        job(name)(lambda ctx: None)


def test_it_refuses_a_job_name_with_a_trailing_newline() -> None:
    with pytest.raises(ConfigError, match="lower-case"):
        job("daily\n")(lambda ctx: None)
