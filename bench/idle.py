"""Idle fleet: PostgreSQL connections and statements per second of each idle instance, for fleets
of 1, 3 and 6 instances sharing one database (from pg_stat_activity and pg_stat_database)."""

from __future__ import annotations

import statistics
import time
import urllib.request
from dataclasses import dataclass

import psycopg

from bench.stack import WORKERS, Stack

FLEETS = (1, 3, 6)


@dataclass(frozen=True)
class IdleFleet:
    """What an idle fleet of `instances` cost its database over `seconds`."""

    instances: int
    seconds: float
    connections_mean: float  # per instance, over the samples
    connections_max: int  # the most any instance held at any sample
    statements_per_s: float  # per instance: committed transactions (every statement is one)


def measure(stack: Stack, seconds: float) -> list[IdleFleet]:
    """Start each fleet on a fresh database, let it idle, and sample it; stop it before the next."""
    found = []
    for size in FLEETS:
        url = stack.postgres_url()
        database = url.rsplit("/", 1)[1]
        names = [f"idle-{size}-{n}" for n in range(size)]
        fleet = [stack.instance(name, f"{url}?application_name={name}") for name in names]
        for instance in fleet:
            # Load balancer health checks reach every worker: each then holds its connection.
            for _ in range(4 * WORKERS):
                with urllib.request.urlopen(f"{instance.url}/readyz", timeout=5):  # noqa: S310 - loopback
                    pass
        # Past start-up (schema check, first sweeps), and past PostgreSQL's delay in reporting an
        # idle backend's statement counts (up to 10 s), before the window opens.
        time.sleep(12)
        with psycopg.connect(stack.postgres_server_url(), autocommit=True) as monitor:
            counts: dict[str, list[int]] = {name: [] for name in names}
            began, first = time.monotonic(), _transactions(monitor, database)
            while time.monotonic() < began + seconds:
                rows = monitor.execute(
                    "SELECT application_name, count(*) FROM pg_stat_activity WHERE datname = %s"
                    " GROUP BY application_name",
                    (database,),
                ).fetchall()
                held = dict(rows)
                for name in names:
                    counts[name].append(int(held.get(name, 0)))
                time.sleep(0.1)  # a sampling interval
            spent, last = time.monotonic() - began, _transactions(monitor, database)
        for instance in fleet:
            instance.stop()
        stack.drop_postgres(url)
        samples = [count for name in names for count in counts[name]]
        found.append(
            IdleFleet(
                instances=size,
                seconds=spent,
                connections_mean=statistics.fmean(samples),
                connections_max=max(samples),
                statements_per_s=(last - first) / spent / size,
            )
        )
    return found


def _transactions(monitor: psycopg.Connection[tuple[int]], database: str) -> int:
    """Transactions the database committed or rolled back so far (backends report within seconds)."""
    row = monitor.execute(
        "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s", (database,)
    ).fetchone()
    return int(row[0]) if row else 0
