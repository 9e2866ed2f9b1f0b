"""HTTP API of the contract: trigger, runs, jobs, health; errors map to JSON in one handler."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request, url_for
from werkzeug.exceptions import HTTPException

from service.errors import (
    BodyTooLarge,
    JobMismatch,
    LedgerUnavailable,
    Malformed,
    RequestTimeout,
    ServiceError,
    UntilPassed,
)
from service.jobs import JOB_NAME
from service.ledger import ClaimRequest, Run, Status
from service.ops.metrics import metrics, render
from service.runs import localruns
from service.schedules.overview import overview
from service.slots import format_slot, parse_slot, utcnow
from service.web.access import drains, reads
from service.web.connections import PROTECTING_HEADERS
from service.web.readiness import write_probe
from service.web.state import TriggerState, current_state

MAX_BODY_BYTES = 64 * 1024
SCHEDULERS = frozenset({"lambda", "scheduler", "eventbridge"})

blueprint = Blueprint("batch_trigger", __name__)


def _state() -> TriggerState:
    return current_state()


@blueprint.after_request
def _count_answer(response: Response) -> Response:
    """Count every answer of the blueprint's routes, errors included, in one place."""
    # Flask runs this for answers made by the error handlers too, 500s included, so no answer
    # of the trigger route goes uncounted.
    _state().count_answer(request.endpoint, request.url_rule, response.status_code)
    return protect(response)


def protect(response: Response) -> Response:
    """Headers every answer of the service carries: no content sniffing of its JSON or logs, and
    no cache (a proxy's or a browser's) keeping runs, logs or token refusals."""
    for name, value in PROTECTING_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


@blueprint.errorhandler(HTTPException)
def _http_error(error: HTTPException) -> tuple[Response, int, dict[str, str]]:
    """Werkzeug's own refusals inside our routes (a body past MAX_CONTENT_LENGTH, ...) as JSON."""
    return http_error_body(error)


@blueprint.errorhandler(ServiceError)
def _service_error(error: ServiceError) -> tuple[Response, int, dict[str, str]]:
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
            # Until the token no longer verifies (exp + leeway): a replay inside the leeway is refused.
            token_expires=claims.remember_until,
        ),
        now,
    )
    body: dict[str, Any] = claim.run.to_json()
    if claim.outcome == "new":
        return jsonify(body), 202, {"Location": url_for(".get_run", run_id=claim.run.id)}
    if claim.outcome == "overlap":
        state.alerts.overlap(claim.run)
        message = f"another slot of {job!r} is still running; this firing was recorded as skipped"
        return jsonify(error="overlap", message=message, run=body), 409, {}
    if claim.outcome == "paused":
        # Answered as handled (200, like a duplicate): the Lambda reports success, Slack stays quiet.
        return jsonify(body | {"duplicate": False, "paused": True}), 200, {}
    return jsonify(body | {"duplicate": True}), 200, {}


@blueprint.get("/v1/runs/<run_id>")
@reads("run")
def get_run(run_id: str) -> Response:
    """One run by id (the `run` scope has read it, and checked the token may see it)."""
    run: Run = g.run
    return jsonify(run.to_json())


@blueprint.get("/v1/runs/<run_id>/log")
@reads("run")
def get_run_log(run_id: str) -> Response:
    """The run's captured output from `?offset=`, as text; headers say where to continue and if it ended."""
    # The run was read before its log: once it is seen ended, the log read after it is whole.
    run: Run = g.run
    offset = request.args.get("offset", "0")
    if not (offset.isascii() and offset.isdigit()) or len(offset) > 15:  # "²".isdigit() is True
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
@reads("runs")
def list_runs() -> Response:
    """Run history, newest first: filters `job`, `status`, `slot`; paging with `limit` and `before`."""
    state = _state()
    status = request.args.get("status")
    if status is not None and status not in Status.__members__.values():
        raise Malformed(f"status must be one of {', '.join(s.value for s in Status)}")
    job = request.args.get("job")
    if job and not JOB_NAME.fullmatch(job):
        raise Malformed("job must be a job name (lower-case letters, digits, '-', '_')")
    limit = request.args.get("limit", "50")
    # ASCII digits only: str.isdigit() also takes "²" and other scripts' digits, which int() refuses.
    if not (limit.isascii() and limit.isdigit() and len(limit) <= 4) or not 1 <= int(limit) <= 1000:
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
@reads("jobs")
def list_jobs() -> Response:
    """Registered jobs: policies, schedule and next due time, last run and success, pause."""
    state = _state()
    now = utcnow()
    names = state.registry.names()
    # Three statements, whatever the number of jobs and the length of history.
    last, successes = state.ledger.last_runs(names), state.ledger.last_runs(names, Status.SUCCEEDED)
    pauses = state.ledger.pauses(now)
    zone = state.settings.timezone
    jobs = [
        spec.to_json()
        | overview(spec, zone, now, last.get(spec.name), successes.get(spec.name), pauses.get(spec.name))
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
@reads("instance")
def instance() -> Response:
    """This instance: its id, whether it drains, and the batches it runs right now."""
    return jsonify(_instance_body(_state()))


@blueprint.post("/v1/instance/drain")
@drains
def drain_instance() -> Response:
    """Stop taking claims on this instance (scale-in); running batches go on.

    The token: `sub` = `drain`, `instance` = this INSTANCE_ID, a `jti` used up here.
    """
    state = _state()
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
    """200 when the instance takes claims and its ledger takes a write (probed every few s); else 503."""
    state = _state()
    if state.draining:
        return jsonify(status="draining"), 503
    error = write_probe(current_app, state.ledger, state.settings.instance_id).error()
    if error is not None:
        return jsonify(status="ledger_unavailable", message=error), 503
    return jsonify(status="ready", instance=state.settings.instance_id), 200


def _instance_body(state: TriggerState) -> dict[str, Any]:
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
    try:
        data = request.stream.read(MAX_BODY_BYTES + 1)
    except TimeoutError:
        raise RequestTimeout("the request body did not arrive in time") from None
    except Exception as exc:
        # The server's parser refused the body's framing (a broken chunk, a client gone
        # mid-body): the request's fault, whichever server parsed it.
        raise Malformed(f"the request body could not be read ({type(exc).__name__})") from None
    if len(data) > MAX_BODY_BYTES:
        raise BodyTooLarge(f"request body exceeds {MAX_BODY_BYTES} bytes")
    if not data.strip():
        return {}
    try:
        parsed = json.loads(data)
    except (ValueError, RecursionError):  # RecursionError: nested past the parser's depth ([[[[...)
        raise Malformed("the body must be empty or a JSON object") from None
    if not isinstance(parsed, dict):
        raise Malformed("the body must be empty or a JSON object")
    return parsed


def http_error_body(error: HTTPException) -> tuple[Response, int, dict[str, str]]:
    """A werkzeug HTTP error (404 of an unknown path, 405, 413, ...) in the contract's JSON shape."""
    status = error.code or 500
    code = {404: "not_found", 413: "too_large"}.get(status, (error.name or "error").lower().replace(" ", "_"))
    # Its own headers too (a 405's Allow), but not its text/html Content-Type.
    headers = {name: value for name, value in error.get_headers() if name.lower() != "content-type"}
    return jsonify(error=code, message=error.description or error.name or "error"), status, headers
