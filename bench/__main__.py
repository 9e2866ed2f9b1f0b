"""`make bench`: measure everything in one run and print the side-by-side tables (see BENCHMARKS.md)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from bench import coldstart, fleet, growth, idle, interference, latency, launcher, report, throughput
from bench.stack import WORKERS, Stack


def main(argv: list[str] | None = None) -> int:
    """Run the measurements in a fixed order and print the report to stdout (progress to stderr)."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--reps", type=int, default=3, help="repetitions of each load run (default 3)")
    parser.add_argument("--seconds", type=float, default=5, help="length of each load run (default 5)")
    parser.add_argument("--cold-runs", type=int, default=30, help="fresh processes per handler (default 30)")
    parser.add_argument("--firings", type=int, default=200, help="firings for event-to-start (default 200)")
    parser.add_argument("--deliveries", type=int, default=1000, help="deliveries per storm (default 1000)")
    parser.add_argument("--idle-seconds", type=float, default=40, help="idle fleet sample (default 40)")
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated sections to run: core (tables 1-5), growth, idle, launcher (default: all)",
    )
    args = parser.parse_args(argv)
    only = {name.strip() for name in args.only.split(",") if name.strip()}
    began = time.monotonic()
    lines: list[str] = []
    with Stack() as stack:
        if only and "core" not in only:
            lines += _ledger_sections(stack, only, args.idle_seconds)
            header = ["## batch-trigger benchmarks", "", *report.machine(stack.postgres_version()), ""]
            minutes = (time.monotonic() - began) / 60
            print("\n".join([*header, *lines, f"(measured in {minutes:.1f} minutes)"]))
            return 0
        _progress("1/5 trigger vs bare endpoint (SQLite, PostgreSQL)")
        rows = throughput.measure(stack, reps=args.reps, seconds=args.seconds)
        lines += [*report.throughput(rows, args.reps, args.seconds, throughput.CONNECTIONS), ""]
        _progress("1b  CPU breakdown per operation")
        ledgers = {"SQLite": f"sqlite:///{stack.work / 'breakdown.db'}", "PostgreSQL": stack.postgres_url()}
        lines += [*report.breakdown({name: _breakdown(url) for name, url in ledgers.items()}), ""]
        service = stack.instance("lambda-target")
        _progress("2/5 Lambda cold start")
        lines += [*report.coldstart(coldstart.measure(stack, service.url, runs=args.cold_runs)), ""]
        _progress("3/5 duplicate storm across the fleet")
        storms = fleet.measure(stack, reps=args.reps, deliveries=args.deliveries)
        lines += [*report.fleet(storms, args.deliveries), ""]
        _progress("4/5 event-to-batch-start latency")
        pg_service = stack.instance("lambda-target-pg", stack.postgres_url())
        starts = {
            "SQLite": latency.measure(stack, service.url, count=args.firings),
            "PostgreSQL": latency.measure(stack, pg_service.url, count=args.firings),
        }
        lines += [*report.latency(starts), ""]
        _progress("5/5 interference of a CPU-bound batch with web latency")
        result = interference.measure(stack, reps=args.reps, seconds=args.seconds)
        lines += [*report.interference(result, args.seconds), ""]
        lines += _ledger_sections(stack, only or {"growth", "idle", "launcher"}, args.idle_seconds)
        header = ["## batch-trigger benchmarks", "", *report.machine(stack.postgres_version()), ""]
    minutes = (time.monotonic() - began) / 60
    print("\n".join([*header, *lines, f"(measured in {minutes:.1f} minutes)"]))
    return 0


def _ledger_sections(stack: Stack, sections: set[str], idle_seconds: float) -> list[str]:
    """Sections 6, 7 and 8: the ledger from 0 to 1 M runs, an idle fleet's cost to PostgreSQL, and
    what starting batches costs an instance (the launcher)."""
    lines: list[str] = []
    if "growth" in sections:
        _progress("6   growth: 0, 100 k and 1 M runs (SQLite, PostgreSQL)")
        rows = {"SQLite": _growth(stack, "sqlite"), "PostgreSQL": _growth(stack, "postgres")}
        lines += [*report.growth(rows), ""]
    if "idle" in sections:
        _progress("7   idle fleet of 1, 3 and 6 instances on one PostgreSQL")
        lines += [*report.idle_fleet(idle.measure(stack, idle_seconds), WORKERS), ""]
    if "launcher" in sections:
        _progress("8   the launcher: CPU per new claim, sessions, crash to re-run, event to start")
        lines += [*launcher.report(launcher.measure(stack)), ""]
    return lines


def _growth(stack: Stack, backend: str) -> dict[str, dict[str, float]]:
    """One process measures the three sizes of one backend; their databases go afterwards."""
    urls = {
        size: f"sqlite:///{stack.work / f'growth-{size}.db'}" if backend == "sqlite" else stack.postgres_url()
        for size in growth.SIZES
    }
    try:
        done = subprocess.run(
            [sys.executable, "-m", "bench.growth", *(f"{size}={url}" for size, url in urls.items())],
            capture_output=True, text=True, timeout=3600, check=False,
        )  # fmt: skip
    finally:
        for url in urls.values():
            if backend == "sqlite":
                for path in stack.work.glob(f"{url.rsplit('/', 1)[1]}*"):
                    path.unlink()
            else:
                stack.drop_postgres(url)
    if done.returncode != 0:
        raise RuntimeError(f"bench.growth failed: {done.stderr[-2000:]}")
    result: dict[str, dict[str, float]] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _breakdown(ledger_url: str) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-m", "bench.breakdown", ledger_url],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"bench.breakdown failed: {done.stderr[-2000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _progress(text: str) -> None:
    print(f"[bench] {text}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
