"""CPU per new claim, all processes included: `python -m bench.claimcpu CLAIMS` prints JSON.

This process becomes a child subreaper, starts one instance (the shipped gunicorn config, SQLite)
and triggers CLAIMS new slots of `bench-noop`; then stops the instance and reaps every process
it ever started: the web workers, the launcher and each batch (or, before the launcher, the
supervisors a web worker double-forked, which are re-parented here). Their CPU is this
process's RUSAGE_CHILDREN. A run with no claims, of the same length, is subtracted.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import resource
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from bench.stack import WORKERS, Stack
from service.cli import client
from service.dev.devserver import ServiceProcess

PR_SET_CHILD_SUBREAPER = 36
THREADS = 8


def main(claims: int) -> dict[str, float]:
    """CPU ms per new claim (all processes of the instance) and the run's wall time."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    with Stack() as stack:
        busy, seconds = _instance_cpu(stack, "claims", claims, None)
        idle, _ = _instance_cpu(stack, "idle", 0, seconds)
    return {"claims": claims, "cpu_ms_per_claim": (busy - idle) * 1000 / claims, "seconds": seconds}


def _instance_cpu(stack: Stack, name: str, claims: int, hold: float | None) -> tuple[float, float]:
    """CPU seconds of every process of one instance's life; how long the claims took."""
    before = _children_cpu()
    env = {
        "LEDGER_URL": f"sqlite:///{stack.work / name}.db",
        "TRIGGER_SECRET": stack.secret,
        "BATCH_MODULES": "bench.jobs",
        "BENCH_STAMP_DIR": str(stack.work),
        "INSTANCE_ID": name,
        "RUN_DIR": str(stack.work / "run" / name),
        "DRAIN_NOTICE_SECONDS": "0",
        "KILL_GRACE_SECONDS": "1",
        "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
    }
    service = ServiceProcess(env, workers=WORKERS, log_path=stack.work / f"{name}.log").start(timeout=60)
    tokens = [stack.mint("bench-noop", stack.slot()) for _ in range(claims)]
    began = time.monotonic()
    with ThreadPoolExecutor(THREADS) as pool:
        post = lambda token: client.request("POST", f"{service.url}/v1/jobs/bench-noop/runs", token, b"{}")  # noqa: E731
        answers = list(pool.map(post, tokens))
    if any(a.status != 202 for a in answers):
        raise RuntimeError(f"unexpected answers: {sorted({a.status for a in answers})}")
    if claims:
        stack.settle(service.url, "bench-noop")
    else:
        time.sleep(hold or 0)
    seconds = time.monotonic() - began
    service.stop()
    _reap_all(service)
    return _children_cpu() - before, seconds


def _reap_all(service: ServiceProcess, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        if not service.members():
            with contextlib.suppress(ChildProcessError):
                while os.waitpid(-1, os.WNOHANG)[0]:
                    pass
            return
        time.sleep(0.05)
    raise RuntimeError("the instance's processes did not all end")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)))
