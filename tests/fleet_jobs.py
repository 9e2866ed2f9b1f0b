"""Jobs for the fleet tests: they note each start and finish per attempt, and run long on purpose."""

from __future__ import annotations

import os
import time
from pathlib import Path

from service import JobContext, job
from service.batches.daily import daily
from service.slots import format_slot


def note(ctx: JobContext, event: str) -> None:
    """Append `event` (start, done) for this run and attempt to TEST_COUNTER_DIR/<job>."""
    # One O_APPEND write per line: executions on any instance of the fleet (they share the
    # directory) each add their own line, so a test counts executions, not ledger rows.
    directory = Path(os.environ["TEST_COUNTER_DIR"])
    line = f"{event} {ctx.run_id} {format_slot(ctx.slot)} attempt={ctx.attempt} pid={os.getpid()}\n"
    with open(directory / ctx.job, "a", encoding="utf-8") as out:
        out.write(line)


def _hold(ctx: JobContext) -> None:
    # The first attempt runs `seconds`, a recovered one `retry_seconds`: a test can lose the
    # first attempt mid-batch (kill, drain) and still watch the next one finish quickly.
    key = "seconds" if ctx.attempt == 1 else "retry_seconds"
    end = time.monotonic() + float(ctx.params.get(key, ctx.params.get("seconds", 1)))
    while time.monotonic() < end:
        ctx.heartbeat()
        time.sleep(0.05)


@job("tally", overlap="allow", timeout=120)
def tally(ctx: JobContext) -> None:
    """Note the start, run for `params.seconds` (`retry_seconds` after the first attempt), note the end."""
    note(ctx, "start")
    _hold(ctx)
    note(ctx, "done")


@job("tally-once", overlap="allow", timeout=120, retry_abandoned=False)
def tally_once(ctx: JobContext) -> None:
    """Like tally, but a run lost with its instance is never run again."""
    note(ctx, "start")
    _hold(ctx)
    note(ctx, "done")


@job("counted-daily", overlap="forbid", timeout=600)
def counted_daily(ctx: JobContext) -> None:
    """The shipped daily job, with each execution noted (the daily event is routed here)."""
    note(ctx, "start")
    daily(ctx)
    note(ctx, "done")
