"""Jobs for the run-log tests: they raise, print, log, start subprocesses, flood and tick."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time

from service import JobContext, job

module_log = logging.getLogger("tests.log_jobs")


def _parse(row: dict[str, str]) -> int:
    return int(row["customer_id"])


def _load(rows: list[dict[str, str]]) -> list[int]:
    return [_parse(row) for row in rows]


@job("traceback")
def traceback_job(ctx: JobContext) -> None:
    """Fail three calls deep, with characters Slack must see escaped."""
    ctx.logger.info("loading rows", extra={"rows": 2})
    _load([{"customer_id": "7"}, {"customer_id": "<none> & co"}])


@job("chatty-exit")
def chatty_exit(ctx: JobContext) -> None:
    """Print, log with extra=, have a subprocess write to stderr, leak a token, exit hard."""
    print("printed to stdout")
    ctx.logger.info("logged through ctx.logger", extra={"customer": "c-42", "rows": 3})
    module_log.info("logged by a module logger")
    subprocess.run(["sh", "-c", "echo 'subprocess wrote to stderr' >&2"], check=True)
    print("token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJkYWlseSJ9.c2lnbmF0dXJl leaked")
    sys.stderr.write("last words before os._exit\n")
    os._exit(3)


@job("flood", timeout=120)
def flood(ctx: JobContext) -> None:
    """Write `params.megabytes` (default 20) MB of numbered 100-byte lines to stdout."""
    lines = int(float(ctx.params.get("megabytes", 20)) * 10_000)
    out = sys.stdout
    for start in range(0, lines, 1000):
        out.write("".join(f"line {i:09d} {'x' * 84}\n" for i in range(start, min(start + 1000, lines))))
    out.write("the end of the flood\n")


@job("ticker", overlap="allow", timeout=120)
def ticker(ctx: JobContext) -> None:
    """Print `tick N` every 0.2 s for `params.seconds` (default 3)."""
    end = time.monotonic() + float(ctx.params.get("seconds", 3))
    tick = 0
    while time.monotonic() < end:
        print(f"tick {tick}")
        tick += 1
        time.sleep(0.2)
    print("ticker done")


@job("flaky")
def flaky(ctx: JobContext) -> None:
    """Fail while `params.fail` is true, succeed otherwise."""
    if ctx.params.get("fail"):
        raise RuntimeError("flaky: the upstream file is not there yet")


@job("chirpy", notify="all")
def chirpy(ctx: JobContext) -> None:
    """Succeed; its channel hears of every success (notify="all")."""
    print("chirp")
