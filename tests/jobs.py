"""Jobs for tests: they count their executions, fail, hang or crash on purpose."""

from __future__ import annotations

import os
import time
from pathlib import Path

from service import JobContext, job


def _record(ctx: JobContext) -> None:
    # Append-only with O_APPEND: concurrent executions would each add a line, so the test
    # counts executions, not runs.
    directory = Path(os.environ["TEST_COUNTER_DIR"])
    with open(directory / ctx.job, "a", encoding="utf-8") as out:
        out.write(f"{ctx.run_id} {ctx.slot.isoformat()} attempt={ctx.attempt} pid={os.getpid()}\n")


@job("count", overlap="allow")
def count(ctx: JobContext) -> None:
    """Record one execution, optionally after sleeping `params.seconds`."""
    time.sleep(float(ctx.params.get("seconds", 0)))
    _record(ctx)


@job("slow", overlap="forbid", timeout=60)
def slow(ctx: JobContext) -> None:
    """Run for `params.seconds` (default 3), checking for cancellation."""
    end = time.monotonic() + float(ctx.params.get("seconds", 3))
    while time.monotonic() < end:
        ctx.heartbeat()
        time.sleep(0.05)
    _record(ctx)


@job("parallel", overlap="allow", timeout=60)
def parallel(ctx: JobContext) -> None:
    """Like slow, but overlapping slots are allowed; `params.read_ledger`: read it every 50 ms meanwhile."""
    end = time.monotonic() + float(ctx.params.get("seconds", 1))
    while ctx.params.get("read_ledger") and time.monotonic() < end:
        ctx.ledger.runs(job=ctx.job, limit=1)
        time.sleep(0.05)
    time.sleep(max(0.0, end - time.monotonic()))
    _record(ctx)


@job("boom")
def boom(ctx: JobContext) -> None:
    """Fail with an exception."""
    raise ValueError("boom: row 42 has no customer id")


@job("hang", timeout=1)
def hang(ctx: JobContext) -> None:
    """Never finish, and ignore cancellation: only the kill stops it."""
    while True:
        time.sleep(0.1)


@job("crash")
def crash(ctx: JobContext) -> None:
    """Exit the process hard, skipping every handler."""
    os._exit(3)


@job("local-cache", scope="instance", overlap="allow")
def local_cache(ctx: JobContext) -> None:
    """A broadcast job: clear this instance's cache (records the execution)."""
    time.sleep(float(ctx.params.get("seconds", 0)))
    _record(ctx)
