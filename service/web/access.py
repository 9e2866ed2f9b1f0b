"""Who may read what: one decorator verifies the bearer token and checks its scope per route.

A token's `sub` decides what it may read: `read` reads everything (the CLI mints it for `runs`,
`jobs`, `logs`); a job name reads that job's runs only (`?job=` must name it, a run must be
its); `drain` reads this instance's `/v1/instance` and drains it, once, when its `instance`
claim is this instance. The decorator puts the claims on `flask.g.claims` (and a run read by id
on `flask.g.run`), so routes map HTTP to the ledger and back, nothing more.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import wraps
from typing import Literal, ParamSpec, TypeVar

from flask import g, request

from service.errors import InstanceMismatch, JobMismatch, RunNotFound, TokenInvalid
from service.slots import utcnow
from service.web.auth import DRAIN_SUBJECT, READ_SUBJECT, Claims
from service.web.state import TriggerState, current_state

#: What a route gives access to:
#: "run"      one run by its `run_id` (read, or a token of the run's job)
#: "runs"     run history (read, or a token of the job named by `?job=`)
#: "jobs"     the job registry (read only)
#: "instance" this instance's state (read, or a drain token for this instance)
#: "drain"    draining this instance (a drain token for this instance, used up on first use)
#: "pause"    pausing or resuming the route's `job` fleet-wide: a write, so a token of that job
#:            (what may trigger it may stop it), used up on first use; `read` may not
Scope = Literal["run", "runs", "jobs", "instance", "drain", "pause"]
# Run ids are uuid4 hex; anything far from that shape is not looked up (a NUL, for one, is an
# error in PostgreSQL rather than a miss).
RUN_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")

P = ParamSpec("P")
R = TypeVar("R")


def reads(scope: Scope) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Require a valid bearer token whose subject may access `scope`; claims on `flask.g.claims`."""

    def decorate(view: Callable[P, R]) -> Callable[P, R]:
        @wraps(view)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
            state = current_state()
            claims = state.verifier.verify(request.headers.get("Authorization"), trigger=False)
            g.claims = claims
            _CHECKS[scope](state, claims)
            return view(*args, **kwargs)

        return guarded

    return decorate


#: The drain endpoint's guard: a drain token for this instance, used up on first use.
drains = reads("drain")


def _run(state: TriggerState, claims: Claims) -> None:
    if claims.sub == DRAIN_SUBJECT:
        raise JobMismatch("a drain token reads /v1/instance only")
    run_id = str((request.view_args or {}).get("run_id", ""))
    run = state.ledger.get(run_id) if RUN_ID.fullmatch(run_id) else None
    if run is None:
        raise RunNotFound(f"no run has id {run_id[:64]!r}")
    if claims.sub != READ_SUBJECT and claims.sub != run.job:
        raise JobMismatch(f"this token reads runs of job {str(claims.sub)[:64]!r} only")
    g.run = run


def _runs(state: TriggerState, claims: Claims) -> None:
    if claims.sub == DRAIN_SUBJECT:
        raise JobMismatch("a drain token reads /v1/instance only")
    if claims.sub != READ_SUBJECT and request.args.get("job") != claims.sub:
        job = str(claims.sub)[:64]
        raise JobMismatch(f"this token reads runs of job {job!r} only: ask with ?job={job}")


def _jobs(state: TriggerState, claims: Claims) -> None:
    if claims.sub != READ_SUBJECT:
        raise JobMismatch("listing jobs needs a token whose sub is 'read'")


def _instance(state: TriggerState, claims: Claims) -> None:
    if claims.sub == READ_SUBJECT:
        return
    if claims.sub != DRAIN_SUBJECT:
        raise JobMismatch("reading the instance needs a token whose sub is 'read' or 'drain'")
    _this_instance(state, claims)


def _drain(state: TriggerState, claims: Claims) -> None:
    if claims.sub != DRAIN_SUBJECT:
        raise JobMismatch("draining an instance needs a token whose sub is 'drain'")
    if claims.jti is None:
        raise TokenInvalid("a drain token lacks the 'jti' claim (it is single-use)")
    _this_instance(state, claims)
    # Used up like a trigger token, and remembered for as long as the token still verifies.
    state.ledger.consume_token(claims.jti, claims.remember_until, utcnow())


def _pause(state: TriggerState, claims: Claims) -> None:
    job = str((request.view_args or {}).get("job", ""))
    state.registry.get(job)  # an unknown job is 404, whatever the token
    if claims.sub != job:
        raise JobMismatch(f"pausing or resuming {job[:64]!r} needs a token whose sub is {job[:64]!r}")
    if claims.jti is None:
        raise TokenInvalid("a pause token lacks the 'jti' claim (it is single-use)")
    state.ledger.consume_token(claims.jti, claims.remember_until, utcnow())


def _this_instance(state: TriggerState, claims: Claims) -> None:
    if claims.instance is None:
        raise TokenInvalid("a drain token lacks the 'instance' claim (the INSTANCE_ID it drains)")
    if claims.instance != state.settings.instance_id:
        raise InstanceMismatch(
            f"this token is for instance {claims.instance[:64]!r}, not {state.settings.instance_id[:64]!r}"
        )


_CHECKS: dict[str, Callable[[TriggerState, Claims], None]] = {
    "run": _run,
    "runs": _runs,
    "jobs": _jobs,
    "instance": _instance,
    "drain": _drain,
    "pause": _pause,
}
