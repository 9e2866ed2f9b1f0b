"""The connection budget on a real PostgreSQL: an instance under real gunicorn holds at most
(workers + 1) connections, a web worker that served no ledger request holds none, and running
batches add none (the instance's launcher records them all through one)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.support.live import LiveService

WORKERS = 3
APP = "budget-test"


@pytest.fixture
def instance(tmp_path: Path, postgres_url: str) -> Iterator[tuple[LiveService, str]]:
    """One instance (3 workers) on a fresh PostgreSQL database, sweeping every second."""
    ledger_url = f"{postgres_url}?application_name={APP}"
    live = LiveService(
        tmp_path, workers=WORKERS, LEDGER_URL=ledger_url, HEARTBEAT_SECONDS="1", LEASE_SECONDS="5"
    )
    with live:
        yield live, postgres_url


def _connections(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE application_name = %s AND datname = current_database()",
            (APP,),
        ).fetchone()
    return int(row[0]) if row else 0


def _sample(url: str, seconds: float) -> list[int]:
    """The connection count every 20 ms for `seconds` (several keeper sweeps)."""
    counts, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        counts.append(_connections(url))
        time.sleep(0.02)  # a sampling interval, not a wait for something to happen
    return counts


def test_it_holds_at_most_workers_plus_one_connections_however_many_batches_run(
    instance: tuple[LiveService, str],
) -> None:
    live, url = instance
    # Idle: the workers checked the schema at start and let go; the launcher holds one, and the
    # keeper one only while it sweeps.
    idle = _sample(url, 4)
    assert 1 <= max(idle) <= WORKERS + 1, idle
    # Every worker serves ledger reads, and six batches run at once.
    started = [
        live.post("parallel", live.mint("parallel", params={"seconds": 4})).body["id"] for _ in range(6)
    ]
    for _ in range(3 * WORKERS):
        assert live.get("/v1/runs?limit=1").status == 200
    busy = _sample(url, 3)
    # Held: one per web worker and the launcher's, for all six batches. The keeper adds its own
    # for the milliseconds of a sweep (README, Running a fleet: budget workers + 2 per instance).
    assert statistics.mode(busy) <= WORKERS + 1, busy
    assert max(busy) <= WORKERS + 2, busy
    assert {live.wait_final(run_id)["status"] for run_id in started} == {"succeeded"}
