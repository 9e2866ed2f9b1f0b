"""Where a trigger's CPU goes, in one process without sockets: `python -m bench.breakdown LEDGER_URL`.

Runs in its own process because it makes itself a child subreaper (to account the CPU of the
batch processes a new claim forks), and prints one JSON object of microseconds per operation.
"""

from __future__ import annotations

import ctypes
import io
import json
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from flask import Flask

PR_SET_CHILD_SUBREAPER = 36
COUNT = 2000


def main(ledger_url: str) -> dict[str, float]:
    """Measure each step of the trigger path against the bare endpoint; µs of CPU per operation."""
    # Stamps and run files in folders that go when the measurement ends.
    work = tempfile.TemporaryDirectory(prefix="batch-trigger-breakdown-")
    os.environ.update(
        LEDGER_URL=ledger_url,
        TRIGGER_SECRET=os.urandom(24).hex(),
        BATCH_MODULES="bench.jobs",
        BENCH_STAMP_DIR=work.name,
        RUN_DIR=f"{work.name}/run",
    )
    from bench.bare import create_app as bare_app
    from service.ledger import ClaimRequest
    from service.slots import utcnow
    from service.web.auth import mint_token
    from service.web.factory import create_app

    app, bare = create_app(), bare_app()
    state = app.extensions["batch_trigger"]
    slot = datetime(2040, 1, 1, tzinfo=UTC) + timedelta(minutes=int.from_bytes(os.urandom(3), "big"))

    def tokens(count: int, new_slots: bool = False) -> list[str]:
        step = timedelta(seconds=1)
        return [
            mint_token(state.settings, "bench-noop", slot=slot + step * (n + 1) if new_slots else slot)
            for n in range(count)
        ]

    _call(app, tokens(1)[0])  # the storm's slot has its run
    out: dict[str, float] = {}
    batch = tokens(COUNT)
    out["bare endpoint (WSGI call)"] = _cpu(lambda n: _call(bare, batch[n]))
    batch = tokens(COUNT)
    out["trigger, duplicate (WSGI call)"] = _cpu(lambda n: _call(app, batch[n]))
    batch = tokens(COUNT)
    out["  verify token (pyjwt HS256)"] = _cpu(
        lambda n: state.verifier.verify(f"Bearer {batch[n]}", trigger=True)
    )
    now = utcnow()
    expires = now + timedelta(minutes=5)
    request = ClaimRequest(job="bench-noop", slot=slot, trigger="manual", instance="x", overlap="allow")
    # As the API claims: the token's jti is used up inside the claim's transaction.
    spent = [replace(request, token_id=os.urandom(12).hex(), token_expires=expires) for _ in range(COUNT)]
    out["  ledger.claim, duplicate, with the token's INSERT (the API's call)"] = _cpu(
        lambda n: state.ledger.claim(spent[n], now)
    )
    out["  ledger.claim, duplicate, without a token"] = _cpu(lambda n: state.ledger.claim(request, now))
    run = state.ledger.claim(request, now).run
    fresh = [
        replace(spent[n], slot=slot + timedelta(days=1, seconds=n), token_id=os.urandom(12).hex())
        for n in range(COUNT)
    ]
    out["  ledger.claim, new slot, with the token (no batch)"] = _cpu(
        lambda n: state.ledger.claim(fresh[n], now)
    )
    out["  Run.to_json"] = _cpu(lambda n: run.to_json())
    worker, descendants = _new_claims(app, tokens(200, new_slots=True))
    out["trigger, new claim: web worker"] = worker
    # Zero since the launcher: the worker hands the run over a socket and forks nothing (the
    # batch's own cost is in table 8, across every process of an instance).
    out["trigger, new claim: processes the web worker forks (none)"] = descendants
    work.cleanup()
    return out


def _call(app: Flask, token: str) -> str:
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/v1/jobs/bench-noop/runs",
        "SERVER_NAME": "bench",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b"{}"),
        "CONTENT_LENGTH": "2",
        "CONTENT_TYPE": "application/json",
        "HTTP_AUTHORIZATION": f"Bearer {token}",
    }
    status: list[str] = []
    b"".join(app.wsgi_app(environ, lambda s, h, e=None: status.append(s)))  # type: ignore[arg-type,func-returns-value]
    return status[0]


def _cpu(operation: Callable[[int], object], count: int = COUNT) -> float:
    began = time.process_time()
    for n in range(count):
        operation(n)
    return (time.process_time() - began) / count * 1e6


def _new_claims(app: Flask, batch: list[str]) -> tuple[float, float]:
    """CPU per new claim in this (web) process and in the processes it forks, reaped here."""
    ctypes.CDLL(None).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    _reap()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    worker = _cpu(lambda n: _call(app, batch[n]), len(batch))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and _reap(block=False):
        time.sleep(0.05)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    spent = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return worker, spent / len(batch) * 1e6


def _reap(block: bool = True) -> bool:
    """Reap finished descendants; True while some are still running."""
    while True:
        try:
            pid, _ = os.waitpid(-1, 0 if block else os.WNOHANG)
        except ChildProcessError:
            return False
        if pid == 0:
            return True


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1])))
