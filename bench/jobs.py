"""Jobs the benchmarks trigger, loaded by the instances through `BATCH_MODULES=bench.jobs`."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from service import JobContext, job
from service.slots import format_slot


def _stamp(ctx: JobContext, event: str, extra: str = "") -> None:
    # CLOCK_MONOTONIC is one clock for every process on a Linux host, so the bench can subtract
    # the moment it invoked the Lambda handler from the moment the body was entered.
    line = f"{event} {ctx.job} {format_slot(ctx.slot)} {time.monotonic():.6f} {os.getpid()} {extra}\n"
    with open(Path(os.environ["BENCH_STAMP_DIR"]) / "stamps", "a", encoding="utf-8") as out:
        out.write(line)


@job("bench-noop", overlap="allow", timeout=60)
def noop(ctx: JobContext) -> None:
    """Do nothing: what is measured is the cost of triggering and starting a batch."""


@job("bench-stamp", overlap="allow", timeout=60)
def stamp(ctx: JobContext) -> None:
    """Note the moment the body was entered (one line per execution, on any instance)."""
    _stamp(ctx, "start")


@job("bench-hold", overlap="allow", timeout=900)
def hold(ctx: JobContext) -> None:
    """Note the start (with the attempt), then sleep `params.seconds`: a batch that just runs long."""
    _stamp(ctx, "start", str(ctx.attempt))
    time.sleep(float(ctx.params.get("seconds", 60)))


@job("bench-spin", overlap="allow", timeout=600)
def spin(ctx: JobContext) -> None:
    """Burn CPU in pure Python for `params.seconds`, then note how much CPU time it got."""
    _stamp(ctx, "start")
    end = time.monotonic() + float(ctx.params.get("seconds", 10))
    total = 0
    while time.monotonic() < end and not ctx.cancelled:
        for i in range(20_000):
            total += i * i
    _stamp(ctx, "cpu", f"{time.process_time():.3f}")


def chatter(lines: int, logger: logging.LoggerAdapter[logging.Logger] | logging.Logger) -> None:
    """A chatty batch's output: `lines` printed lines of 100 bytes, every tenth also a log record."""
    for i in range(lines):
        print(f"row {i:09d} processed {'.' * 72}")
        if i % 10 == 0:
            logger.info("progress", extra={"row": i})


@job("bench-chatty", overlap="allow", timeout=600)
def chatty(ctx: JobContext) -> None:
    """Print `params.lines` (default 100 000) lines and log every tenth; stamp the body's start and end."""
    _stamp(ctx, "start")
    chatter(int(ctx.params.get("lines", 100_000)), ctx.logger)
    _stamp(ctx, "end")
