"""`python -m bench.capture`: what capturing a batch's output costs, with the start path beside it.

1. The capture alone: a process writes N MB of 100-byte lines into the pipes; this process reads,
   stamps, redacts, bounds and stores them in a SQLite ledger. CPU seconds per MB of output.
2. A chatty job under a real instance: `bench-chatty` prints 100 000 lines and logs every tenth;
   the body's own time against the same code writing to /dev/null at the same niceness.
3. Event-to-start p50/p99 (200 firings through the real Lambda handler) and the duplicate-answer
   ratio to a bare endpoint, as `make bench` measures them: the capture must not move them.

Parts 2 and 3 run on any revision (so a tree without the capture gives the "before" figures).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import latency, throughput
from bench.stack import Stack, slot_text
from service.cli import client

CHATTY = "bench-chatty"
_WRITER = """
import sys
out = sys.stdout.buffer
block = b"".join(b"row %09d processed %s\\n" % (i, b"." * 72) for i in range(1000))
for _ in range(int(sys.argv[1]) // 1000):
    out.write(block)
"""
_BASELINE = """
import json, logging, os, sys, time
os.nice(10)
from bench.jobs import chatter
try:
    from service.logs import RunLogger as Adapter, configure_batch_logging
    configure_batch_logging(logging.INFO)
except ImportError:  # a revision before the capture: records went to stderr as JSON lines
    from service.logs import configure_logging
    Adapter = logging.LoggerAdapter
    configure_logging()
began = time.monotonic()
chatter(int(sys.argv[1]), Adapter(logging.getLogger("batch_trigger.job.bench-chatty"), {}))
sys.stdout.flush()
with open(sys.argv[2], "w") as out:
    json.dump(time.monotonic() - began, out)
"""


def capture_cpu(megabytes: int) -> dict[str, float]:
    """CPU seconds this process spends capturing `megabytes` MB of output into a SQLite ledger."""
    from service.ledger import open_ledger
    from service.runs.capture import OutputCapture, Pipes

    lines = megabytes * 10_000
    with tempfile.TemporaryDirectory() as work:
        ledger = open_ledger(f"sqlite:///{work}/capture.db")
        ledger.ensure_schema()
        pipes = Pipes.open()
        writer = subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(lines)], stdout=pipes.out_write, stderr=pipes.err_write
        )
        capture = OutputCapture("bench", ledger, pipes.keep_read_ends())
        cpu, wall = time.process_time(), time.monotonic()
        while capture.pump(1.0):
            pass
        capture.finish()
        cpu, wall = time.process_time() - cpu, time.monotonic() - wall
        writer.wait(30)
        stored = len(ledger.read_log("bench").text)
    return {
        "megabytes": megabytes,
        "cpu_s": cpu,
        "wall_s": wall,
        "cpu_ms_per_mb": cpu * 1000 / megabytes,
        "stored_bytes": stored,
    }


def chatty_job(stack: Stack, runs: int, lines: int) -> dict[str, Any]:
    """The chatty job's body time under an instance, and the same code's time writing to /dev/null."""
    service = stack.instance("chatty")
    under: list[float] = []
    for _ in range(runs):
        slot = stack.slot()
        answer = client.trigger(service.url, CHATTY, stack.mint(CHATTY, slot, params={"lines": lines}))
        run = client.wait_for_run(service.url, answer.body["id"], stack.read_token, 300)
        if run["status"] != "succeeded":
            raise RuntimeError(f"the chatty job ended {run['status']}: {run.get('error')}")
        stamps = {s.event: s.at for s in stack.stamps() if s.job == CHATTY and s.slot == slot_text(slot)}
        under.append(stamps["end"] - stamps["start"])
    alone: list[float] = []
    for _ in range(runs):
        with tempfile.NamedTemporaryFile("r", suffix=".json") as result:
            subprocess.run(
                [sys.executable, "-c", _BASELINE, str(lines), result.name],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True,
                env=os.environ | {"PYTHONPATH": str(Path(__file__).resolve().parents[1])},
            )  # fmt: skip
            alone.append(float(json.load(result)))
    return {
        "lines": lines,
        "under_instance_s": statistics.median(under),
        "to_devnull_s": statistics.median(alone),
        "runs": runs,
    }


def start_path(stack: Stack, firings: int, reps: int, seconds: float) -> dict[str, Any]:
    """Event-to-start percentiles on both ledgers and the duplicate-answer ratios."""
    found: dict[str, Any] = {}
    for name, url in (("SQLite", None), ("PostgreSQL", stack.postgres_url())):
        service = stack.instance(f"start-{name.lower()}", url) if url else stack.instance("start-sqlite")
        times = sorted(latency.measure(stack, service.url, count=firings))
        found[f"event_to_start_{name}"] = {
            "p50_ms": statistics.median(times),
            "p99_ms": times[min(len(times) - 1, int(len(times) * 0.99))],
        }
    for row in throughput.measure(stack, reps=reps, seconds=seconds):
        if row.scenario.duplicates:
            found[f"ratio {row.scenario.name}"] = row.ratio
    return found


def main(argv: list[str] | None = None) -> int:
    """Measure and print one JSON object (progress on stderr)."""
    parser = argparse.ArgumentParser(prog="python -m bench.capture", description=__doc__)
    parser.add_argument("--megabytes", type=int, default=20)
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--firings", type=int, default=200)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--skip-capture", action="store_true", help="for a revision without the capture")
    args = parser.parse_args(argv)
    result: dict[str, Any] = {}
    if not args.skip_capture:
        print("[bench] capture CPU", file=sys.stderr, flush=True)
        result["capture"] = capture_cpu(args.megabytes)
    with Stack() as stack:
        print("[bench] chatty job", file=sys.stderr, flush=True)
        result["chatty"] = chatty_job(stack, args.runs, args.lines)
        print("[bench] start path", file=sys.stderr, flush=True)
        result["start"] = start_path(stack, args.firings, args.reps, args.seconds)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
