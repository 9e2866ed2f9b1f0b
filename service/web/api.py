"""HTTP API of the contract: trigger, runs, jobs, health; errors map to JSON in one handler."""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Response, current_app, g, jsonify, request, url_for

from service.errors import (
    BodyTooLarge,
    JobMismatch,
    LedgerUnavailable,
    Malformed,
    RunNotFound,
    ServiceError,
    UntilPassed,
)
from service.ledger import ClaimRequest, Run, Status
from service.ops.metrics import metrics, render
from service.runs import localruns
from service.schedules.overview import overview
from service.slots import format_slot, parse_slot, utcnow
from service.web.access import reads

if TYPE_CHECKING:  # the extension registers this blueprint; only its type is needed here
    from service.web.extension import BatchTrigger

MAX_BODY_BYTES = 64 * 1024
SCHEDULERS = frozenset({"lambda", "scheduler", "eventbridge"})

blueprint = Blueprint("batch_trigger", __name__)


def _state() -> BatchTrigger:
    state: BatchTrigger = current_app.extensions["batch_trigger"]
    return state


@blueprint.errorhandler(ServiceError)
def _service_error(error: ServiceError) -> tuple[Response, int, dict[str, str]]:
    if request.endpoint == "batch_trigger.trigger":
        _state().count_answer(error.status)
    if isinstance(error, LedgerUnavailable):
        metrics().ledger_errors.labels("api").inc()
    headers = {"Retry-After": str(error.retry_after)} if error.retry_after else {}
    return jsonify(error=error.code, message=error.message), error.status, headers


@blueprint.post("/v1/jobs/<job>/runs")
def trigger(job: str) -> tuple[Response, int, dict[str, str]]:
    """Claim (job, slot) from a signed token and start the batch; duplicates answer 200."""
    state = _state()
    _read_json_body()
    claims = state.verifier.verify(request.headers.get("Authorization"), trigger=True)
    spec = state.registry.get(job)
    if claims.sub != job:
        raise JobMismatch(f"token is for job {str(claims.sub)[:64]!r}, not {job!r}")
    state.refuse_when_draining()
    now = utcnow()
    assert claims.jti is not None and claims.slot is not None
    # Claim, and hand a new run to this instance's launcher (the web worker never forks).
    claim = state.launching.claim(
        ClaimRequest(
            job=job,
            slot=claims.slot,
            trigger="schedule" if claims.iss in SCHEDULERS else "manual",
            instance=state.settings.instance_id,
            overlap=spec.overlap,
            force=claims.force,
            event_id=claims.event_id,
            params=claims.params,
            target=state.settings.instance_id if spec.scope == "instance" else "",
            token_id=claims.jti,
            token_expires=now.fromtimestamp(claims.expires_at, now.tzinfo),
        ),
        now,
    )
    body: dict[str, Any] = claim.run.to_json()
    if claim.outcome == "new":
        state.count_answer(202)
        return jsonify(body), 202, {"Location": url_for(".get_run", run_id=claim.run.id)}
    if claim.outcome == "overlap":
        state.alerts.overlap(claim.run)
        state.count_answer(409)
        message = f"another slot of {job!r} is still running; this firing was recorded as skipped"
        return jsonify(error="overlap", message=message, run=body), 409, {}
    state.count_answer(200)
    if claim.outcome == "paused":
        # Answered as handled (200, like a duplicate): the Lambda reports success, Slack stays quiet.
        return jsonify(body | {"duplicate": False, "paused": True}), 200, {}
    return jsonify(body | {"duplicate": True}), 200, {}


@blueprint.get("/v1/runs/<run_id>")
def get_run(run_id: str) -> Response:
    """One run by id."""
    state = _state()
    state.verifier.verify(request.headers.get("Authorization"), trigger=False)
    run = state.ledger.get(run_id)
    if run is None:
        raise RunNotFound(f"no run has id {run_id[:64]!r}")
    return jsonify(run.to_json())


@blueprint.get("/v1/runs/<run_id>/log")
@reads("run")
def get_run_log(run_id: str) -> Response:
    """The run's captured output from `?offset=`, as text; headers say where to continue and if it ended."""
    # The run was read before its log: once it is seen ended, the log read after it is whole.
    run: Run = g.run
    offset = request.args.get("offset", "0")
    if not offset.isdigit() or len(offset) > 15:
        raise Malformed("offset must be a whole number of bytes (the X-Log-Offset of the previous read)")
    page = _state().ledger.read_log(run.id, int(offset))
    headers = {
        "X-Log-Offset": str(page.next_offset),
        "X-Run-Status": run.status.value,
        "X-Run-Ended": "false" if run.active else "true",
        "Cache-Control": "no-store",
    }
    return Response(page.text, content_type="text/plain; charset=utf-8", headers=headers)


@blueprint.get("/v1/runs")
def list_runs() -> Response:
    """Run history, newest first: filters `job`, `status`, `slot`; paging with `limit` and `before`."""
    state = _state()
    state.verifier.verify(request.headers.get("Authorization"), trigger=False)
    status = request.args.get("status")
    if status is not None and status not in Status.__members__.values():
        raise Malformed(f"status must be one of {', '.join(s.value for s in Status)}")
    limit = request.args.get("limit", "50")
    if not limit.isdigit() or not 1 <= int(limit) <= 1000:
        raise Malformed("limit must be a whole number from 1 to 1000")
    runs = state.ledger.runs(
        job=request.args.get("job") or None,
        status=Status(status) if status else None,
        slot=_time_arg("slot"),
        before=_time_arg("before"),
        limit=int(limit),
    )
    body: dict[str, Any] = {"runs": [run.to_json() for run in runs]}
    if request.args.get("job") and request.args.get("slot"):
        body["coverage"] = _coverage(runs)
    if len(runs) == int(limit):
        # The next page: runs created before the oldest one here.
        body["next"] = format_slot(runs[-1].created_at)
    return jsonify(body)


@blueprint.get("/v1/jobs")
def list_jobs() -> Response:
    """Registered jobs: policies, schedule and next due time, last run and success, pause."""
    state = _state()
    state.verifier.verify(request.headers.get("Authorization"), trigger=False)
    now = utcnow()
    last = state.ledger.last_runs(state.registry.names())
    pauses = state.ledger.pauses(now)
    zone = state.settings.timezone
    jobs = [
        spec.to_json() | overview(spec, zone, now, state.ledger, pauses, last.get(spec.name))
        for spec in state.registry
    ]
    return jsonify(jobs=jobs)


@blueprint.post("/v1/jobs/<job>/pause")
@reads("pause")
def pause_job(job: str) -> Response:
    """Pause the job fleet-wide: firings are answered and recorded `skipped` until resumed."""
    state = _state()
    body = _read_json_body()
    reason = body.get("reason", "")
    if not isinstance(reason, str) or len(reason) > 500:
        raise Malformed("reason must be a text of at most 500 characters")
    # Free text for people: what no ledger can store (NUL, lone surrogates) is dropped, not refused.
    reason = reason.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")
    now = utcnow()
    until = None
    if body.get("until") is not None:
        try:
            until = parse_slot(body["until"])
        except ValueError as exc:
            raise Malformed(f"until: {exc}") from None
        if until <= now:
            raise UntilPassed(f"until {format_slot(until)} has passed: the pause would end before it began")
    pause = state.ledger.pause(job, str(g.claims.iss or "unknown"), reason, until, now)
    state.alerts.paused(pause)
    return jsonify(job=job, paused=True, pause=pause.to_json())


@blueprint.post("/v1/jobs/<job>/resume")
@reads("pause")
def resume_job(job: str) -> Response:
    """Lift the job's pause; `resumed` is false when it was not paused (and nothing is posted)."""
    state = _state()
    _read_json_body()
    lifted = state.ledger.resume(job, utcnow())
    if lifted is not None:
        state.alerts.resumed(job, str(g.claims.iss or "unknown"), lifted)
    return jsonify(job=job, paused=False, resumed=lifted is not None)


@blueprint.get("/v1/instance")
def instance() -> Response:
    """This instance: its id, whether it drains, and the batches it runs right now."""
    state = _state()
    state.verifier.verify(request.headers.get("Authorization"), trigger=False)
    return jsonify(_instance_body(state))


@blueprint.post("/v1/instance/drain")
def drain_instance() -> Response:
    """Stop taking claims on this instance (scale-in); running batches go on. Token `sub`: drain."""
    state = _state()
    claims = state.verifier.verify(request.headers.get("Authorization"), trigger=False)
    if claims.sub != "drain":
        raise JobMismatch("draining an instance needs a token whose sub is 'drain'")
    state.drain()
    return jsonify(_instance_body(state))


@blueprint.get("/healthz")
def healthz() -> Response:
    """200 while the process lives."""
    return jsonify(status="ok")


@blueprint.get("/metrics")
def metrics_text() -> Response:
    """Prometheus exposition of this instance (all of its workers and its keeper)."""
    body, content_type = render()
    return Response(body, content_type=content_type)


@blueprint.get("/readyz")
def readyz() -> tuple[Response, int]:
    """200 when the ledger answers and the instance takes claims; else 503."""
    state = _state()
    if state.draining:
        return jsonify(status="draining"), 503
    try:
        state.ledger.ping()
    except ServiceError as exc:
        return jsonify(status="ledger_unavailable", message=exc.message), 503
    return jsonify(status="ready", instance=state.settings.instance_id), 200


def _instance_body(state: BatchTrigger) -> dict[str, Any]:
    running = localruns.running(state.settings.run_dir, state.settings.instance_id)
    return {"instance": state.settings.instance_id, "draining": state.draining, "running": sorted(running)}


def _coverage(runs: list[Run]) -> dict[str, Any]:
    """Per instance, the latest attempt's status: which instances a broadcast slot reached."""
    latest: dict[str, Run] = {}
    for run in runs:
        key = run.target or run.instance or ""
        if key not in latest or run.attempt > latest[key].attempt:
            latest[key] = run
    statuses = {key: run.status.value for key, run in sorted(latest.items())}
    return {
        "instances": statuses,
        "count": len(statuses),
        "succeeded": sum(1 for status in statuses.values() if status == "succeeded"),
    }


def _time_arg(name: str) -> datetime | None:
    value = request.args.get(name)
    if not value:
        return None
    try:
        return parse_slot(value)
    except ValueError as exc:
        raise Malformed(f"{name}: {exc}") from None


def _read_json_body() -> dict[str, Any]:
    """The body: empty or a JSON object of reasonable size (the trigger route ignores it)."""
    length = request.content_length
    if length is not None and length > MAX_BODY_BYTES:
        raise BodyTooLarge(f"request body exceeds {MAX_BODY_BYTES} bytes")
    data = request.stream.read(MAX_BODY_BYTES + 1)
    if len(data) > MAX_BODY_BYTES:
        raise BodyTooLarge(f"request body exceeds {MAX_BODY_BYTES} bytes")
    if not data.strip():
        return {}
    try:
        parsed = json.loads(data)
    except ValueError:
        raise Malformed("the body must be empty or a JSON object") from None
    if not isinstance(parsed, dict):
        raise Malformed("the body must be empty or a JSON object")
    return parsed
