"""Measurement 8: what starting batches costs an instance, and how soon a dead instance's run returns.

- CPU per new claim, every process of the instance included (`bench.claimcpu`, SQLite);
- ledger connections an instance holds on PostgreSQL, idle and with five batches running
  (pg_stat_activity of the instance's database);
- crash to re-run: two instances on PostgreSQL with the default lease (60 s) and heartbeat
  (15 s); a long batch on one, which is killed (SIGKILL to all its processes); the time from
  the kill to the next attempt's body starting on the other (the job's own stamps).

`python -m bench.launcher` runs it alone and prints JSON (used to measure a checkout of the code
before the launcher the same way); `make bench` prints it as table 8 (`--only launcher`: alone).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

import psycopg

from bench import latency
from bench.stack import REPO, Stack
from service.cli import client

HOLDS = 5
#: How long the second instance's keeper gets to see the first one's launcher hold its lock.
LOOK = 6.0


def measure(stack: Stack, claims: int = 200, firings: int = 200) -> dict[str, Any]:
    """Every figure of table 6."""
    starts = {}
    for name, url in (("SQLite", None), ("PostgreSQL", stack.postgres_url())):
        service = stack.instance(f"latency-{name.lower()}", url)
        starts[name] = sorted(latency.measure(stack, service.url, count=firings))
    return {
        "cpu": _claim_cpu(claims),
        "connections": _connections(stack),
        "crash_to_rerun_s": _crash_to_rerun(stack),
        "event_to_start_ms": {name: _percentiles(values) for name, values in starts.items()},
    }


def _percentiles(values: list[float]) -> dict[str, float]:
    return {"p50": values[len(values) // 2], "p99": values[min(len(values) - 1, int(len(values) * 0.99))]}


def _claim_cpu(claims: int) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-m", "bench.claimcpu", str(claims)],
        capture_output=True, text=True, timeout=900, check=False, env=_env(),
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"bench.claimcpu failed: {done.stderr[-2000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _connections(stack: Stack) -> dict[str, int]:
    url = stack.postgres_url()
    service = stack.instance("connections", url)
    time.sleep(2)  # start-up connections (schema check) closed or settled
    idle = _sessions(url)
    for _ in range(HOLDS):
        token = stack.mint("bench-hold", stack.slot(), params={"seconds": 20})
        answer = client.request("POST", f"{service.url}/v1/jobs/bench-hold/runs", token, b"{}")
        if answer.status != 202:
            raise RuntimeError(f"hold not started: {answer.status}")
    _wait(lambda: len([s for s in stack.stamps() if s.job == "bench-hold"]) >= HOLDS, 30)
    time.sleep(2)
    running = _sessions(url)
    stack.settle(service.url, "bench-hold")
    return {"idle": idle, "five_batches": running}


def _crash_to_rerun(stack: Stack) -> float:
    url = stack.postgres_url()
    victim = stack.instance("victim", url)
    stack.instance("survivor", url)
    slot = stack.slot()
    token = stack.mint("bench-hold", slot, params={"seconds": 600})
    answer = client.request("POST", f"{victim.url}/v1/jobs/bench-hold/runs", token, b"{}")
    if answer.status != 202:
        raise RuntimeError(f"hold not started: {answer.status}")
    slot_text = answer.body["slot"]
    _wait(lambda: _starts(stack, slot_text) >= 1, 30)
    time.sleep(LOOK)
    killed = time.monotonic()
    victim.kill()
    _wait(lambda: _starts(stack, slot_text) >= 2, 180)
    second = [s.at for s in stack.stamps() if s.job == "bench-hold" and s.slot == slot_text][1]
    return second - killed


def _starts(stack: Stack, slot: str) -> int:
    return sum(1 for s in stack.stamps() if s.job == "bench-hold" and s.slot == slot and s.event == "start")


def _sessions(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
    return int(row[0]) if row else 0


def _wait(condition: Any, timeout: float) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise RuntimeError(f"condition not met within {timeout} s")
        time.sleep(0.05)


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def report(result: dict[str, Any]) -> list[str]:
    """Table 6 in Markdown."""
    cpu, conns = result["cpu"], result["connections"]
    return [
        "#### 8. Starting batches: CPU per new claim (all processes), ledger connections, crash to re-run",
        "",
        "| figure | value |",
        "|---|---|",
        f"| CPU per new claim, every process of the instance (SQLite, {cpu['claims']:.0f} claims) |"
        f" {cpu['cpu_ms_per_claim']:.1f} ms |",
        f"| PostgreSQL sessions of one instance, idle | {conns['idle']} |",
        f"| PostgreSQL sessions of one instance, {HOLDS} batches running | {conns['five_batches']} |",
        f"| crash to re-run (kill -9 of the instance, default lease 60 s) |"
        f" {result['crash_to_rerun_s']:.1f} s |",
        *(
            f"| event to batch start, {name}, p50 / p99 | {v['p50']:.1f} / {v['p99']:.1f} ms |"
            for name, v in result["event_to_start_ms"].items()
        ),
    ]


if __name__ == "__main__":
    with Stack() as bench_stack:
        print(json.dumps(measure(bench_stack)))
