"""The printed report: machine facts, then one table per measurement, ready to paste as Markdown."""

from __future__ import annotations

import os
import platform
import sqlite3
import statistics
import subprocess
from collections.abc import Sequence
from importlib.metadata import version

from bench import wrk
from bench.coldstart import ColdStart
from bench.fleet import Storm
from bench.idle import IdleFleet
from bench.interference import Interference
from bench.throughput import Comparison, median

TIMES = "\N{MULTIPLICATION SIGN}"
TARGETS = {
    "new": 0.6,
    "duplicate": 0.8,
    "cold": 1.3,
    "start_p99_ms": 100.0,
    "interference": 1.5,
    "growth": 1.5,
}


def machine(postgres: str) -> list[str]:
    """Lines describing where the numbers came from."""
    cpu = "?"
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    load = os.getloadavg()
    packages = ", ".join(f"{p} {version(p)}" for p in ("flask", "gunicorn", "pyjwt", "psycopg"))
    nginx = subprocess.run(["/usr/sbin/nginx", "-v"], capture_output=True, text=True, check=False).stderr
    return [
        f"- machine: {os.cpu_count()} cores, {cpu}, Linux {platform.release()}",
        f"- load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (shared machine)",
        f"- Python {platform.python_version()}; {packages}; SQLite {sqlite3.sqlite_version}",
        f"- PostgreSQL {postgres}; {wrk.wrk_version()}; {nginx.strip().replace('nginx version: ', '')}",
    ]


def _ratio(value: float, target: float, *, at_most: bool = False) -> str:
    met = value <= target if at_most else value >= target
    sign = "≤" if at_most else "≥"
    return f"{value:.2f}{TIMES} | {sign} {target}{TIMES} | {'met' if met else 'MISSED'}"


def throughput(rows: Sequence[Comparison], reps: int, seconds: float, connections: int) -> list[str]:
    """Table 1: trigger against bare, per scenario."""
    lines = [
        f"### 1. Trigger endpoint vs bare Flask endpoint (gunicorn sync, 4 workers; wrk 1 thread, "
        f"{connections} connections, {seconds:g} s x {reps}, medians)",
        "",
        "| scenario | trigger req/s | p50 ms | p99 ms | bare req/s | p50 ms | p99 ms | ratio | target | |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for row in rows:
        target = TARGETS["duplicate" if row.scenario.duplicates else "new"]
        t, b = row.trigger, row.bare
        lines.append(
            f"| {row.scenario.name} | {median(t, 'rps'):,.0f} | {median(t, 'p50_ms'):.1f} | "
            f"{median(t, 'p99_ms'):.1f} | {median(b, 'rps'):,.0f} | {median(b, 'p50_ms'):.1f} | "
            f"{median(b, 'p99_ms'):.1f} | {_ratio(row.ratio, target)} |"
        )
    bad = [f"{r.scenario.name}: {r.unexpected}" for r in rows if r.unexpected]
    lines.append("")
    lines.append(f"Unexpected answers (not 202 / 200, or socket errors): {', '.join(bad) or 'none'}.")
    return lines


def breakdown(rows: dict[str, dict[str, float]]) -> list[str]:
    """Table 1b: CPU per operation, in-process, per ledger."""
    ledgers = list(rows)
    lines = [
        "### 1b. Where a trigger's CPU goes (one process, no sockets; µs of CPU per operation)",
        "",
        f"| step | {' | '.join(ledgers)} |",
        f"|---|{'---:|' * len(ledgers)}",
    ]
    for step in rows[ledgers[0]]:
        lines.append(f"| {step} | {' | '.join(f'{rows[ledger][step]:,.0f}' for ledger in ledgers)} |")
    return lines


def coldstart(rows: Sequence[ColdStart]) -> list[str]:
    """Table 2: cold start ratios per layout."""
    lines = [
        f"### 2. Lambda cold start: fresh process → import → first event answered "
        f"({rows[0].runs} runs each, interleaved, medians)",
        "",
        "| layout | lambda_trigger.handler ms | minimal urllib handler ms | ratio | target | |",
        "|---|---:|---:|---:|---|---|",
    ]
    for row in rows:
        cells = _ratio(row.ratio, TARGETS["cold"], at_most=True)
        lines.append(f"| {row.layout} | {row.handler_ms:.1f} | {row.minimal_ms:.1f} | {cells} |")
    return lines


def fleet(storms: Sequence[Storm], deliveries: int) -> list[str]:
    """Table 3: the duplicate storm across the fleet."""
    lines = [
        f"### 3. Duplicate storm: {deliveries:,} concurrent deliveries of one slot, 3 instances "
        "behind nginx, PostgreSQL",
        "",
        "| storm | all answered in s | answers | delivered again | executions | ledger runs | target |",
        "|---|---:|---|---:|---:|---:|---|",
    ]
    for n, storm in enumerate(storms, 1):
        answers = ", ".join(f"{code}: {count}" for code, count in storm.statuses.items())
        met = "met" if storm.executions == 1 and storm.ledger_runs == 1 else "MISSED"
        lines.append(
            f"| {n} | {storm.seconds:.2f} | {answers} | {storm.retried} | {storm.executions} | "
            f"{storm.ledger_runs} | "
            f"1 execution: {met} |"
        )
    lines.append(f"| median | {statistics.median(s.seconds for s in storms):.2f} | | | | | |")
    return lines


def latency(rows: dict[str, list[float]]) -> list[str]:
    """Table 4: event-to-batch-start latency."""
    lines = [
        "### 4. Event → batch start (warm handler invoked → job body entered, loopback)",
        "",
        "| ledger | firings | p50 ms | p99 ms | max ms | target p99 | |",
        "|---|---:|---:|---:|---:|---|---|",
    ]
    for ledger, values in rows.items():
        p50, p99 = percentile(values, 50), percentile(values, 99)
        met = "met" if p99 < TARGETS["start_p99_ms"] else "MISSED"
        lines.append(
            f"| {ledger} | {len(values)} | {p50:.1f} | {p99:.1f} | {max(values):.1f} | "
            f"< {TARGETS['start_p99_ms']:.0f} ms | {met} |"
        )
    return lines


def interference(result: Interference, seconds: float) -> list[str]:
    """Table 5: web latency with a CPU-bound batch against idle."""
    idle, busy = result.idle, result.busy
    ratio = median(busy, "p99_ms") / median(idle, "p99_ms")
    share = statistics.median(result.batch_cpu_share)
    return [
        f"### 5. Interference: GET /healthz (wrk, 4 connections, {seconds:g} s x {len(idle)}, medians) "
        "on one instance, idle vs while a CPU-bound batch runs there",
        "",
        "| instance | req/s | p50 ms | p99 ms |",
        "|---|---:|---:|---:|",
        f"| idle | {median(idle, 'rps'):,.0f} | {median(idle, 'p50_ms'):.2f} | "
        f"{median(idle, 'p99_ms'):.2f} |",
        f"| CPU-bound batch running | {median(busy, 'rps'):,.0f} | {median(busy, 'p50_ms'):.2f} | "
        f"{median(busy, 'p99_ms'):.2f} |",
        "",
        f"p99 ratio busy/idle: {_ratio(ratio, TARGETS['interference'], at_most=True).replace(' | ', ', ')}; "
        f"the batch (BATCH_NICE=10) still got {share:.0%} of a core while the web tier was loaded.",
    ]


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, round(pct / 100 * len(ordered) + 0.4999))
    return ordered[min(rank, len(ordered)) - 1]


def growth(rows: dict[str, dict[str, dict[str, float]]]) -> list[str]:
    """Table 6: each request and sweep on ledgers of growing size, as ratios to the empty ledger."""
    ledgers = list(rows)
    sizes = list(next(iter(rows[ledgers[0]].values())))
    names = {"0": "0", "100000": "100 k", "1000000": "1 M"}
    head = " | ".join(f"{ledger} {'ms at 0' if size == '0' else names.get(size, size)}"
                      for ledger in ledgers for size in sizes)  # fmt: skip
    lines = [
        "### 6. Growth: each request and sweep on a ledger of 0, 100 k and 1 M finished runs "
        "(200 jobs, 3 years of slots; in-process, medians of 200 calls interleaved across sizes; "
        f"ratios to 0; target ≤ {TARGETS['growth']}{TIMES} at 1 M)",
        "",
        f"| operation | {head} | |",
        f"|---|{'---:|' * len(ledgers) * len(sizes)}---|",
    ]
    for operation in rows[ledgers[0]]:
        cells, met = [], True
        for ledger in ledgers:
            figures = rows[ledger][operation]
            base = figures["0"]
            for size in sizes:
                if size == "0":
                    cells.append(f"{base:.2f}")
                    continue
                ratio = figures[size] / base
                cells.append(f"{ratio:.2f}{TIMES}")
                met = met and (size != sizes[-1] or ratio <= TARGETS["growth"])
        lines.append(f"| {operation} | {' | '.join(cells)} | {'met' if met else 'MISSED'} |")
    return lines


def idle_fleet(fleets: Sequence[IdleFleet], workers: int) -> list[str]:
    """Table 7: what an idle fleet costs its PostgreSQL."""
    lines = [
        f"### 7. Idle fleet on one PostgreSQL: {workers} workers per instance, every worker reached "
        f"by /readyz, then {fleets[0].seconds:.0f} s idle (pg_stat_activity every 0.1 s, "
        "pg_stat_database)",
        "",
        "| instances | connections per instance, mean | most at any sample | budget (workers + 1) | "
        "fleet's connections | statements/s per instance |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for fleet in fleets:
        lines.append(
            f"| {fleet.instances} | {fleet.connections_mean:.2f} | {fleet.connections_max} | {workers + 1} | "
            f"{fleet.connections_mean * fleet.instances:.1f} | {fleet.statements_per_s:.2f} |"
        )
    return lines
