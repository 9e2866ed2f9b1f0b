"""The connection budget on a real PostgreSQL: an instance under real gunicorn holds at most
(workers + 1) connections — idle, and with every worker serving reads, the keeper sweeping every
second and six batches reading the ledger at once (README, Running a fleet)."""

from __future__ import annotations

import threading
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
    # Every worker reached (as a load balancer's health checks do), then idle: the workers keep
    # their connections, the launcher holds one, and the keeper's sweeps and counts each take a
    # connection only when a worker let its go.
    for _ in range(4 * WORKERS):
        assert live.get("/readyz").status == 200
    idle = _sample(url, 4)
    assert 1 <= max(idle) <= WORKERS + 1, idle
    # Busy: reads on every worker without pause, six batches reading the ledger every 50 ms.
    answers: list[int] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            answers.append(live.get("/v1/runs?limit=1").status)

    readers = [threading.Thread(target=read) for _ in range(WORKERS + 1)]
    for reader in readers:
        reader.start()
    try:
        token = {"seconds": 4, "read_ledger": True}
        started = [live.post("parallel", live.mint("parallel", params=token)).body["id"] for _ in range(6)]
        busy = _sample(url, 3)
    finally:
        stop.set()
        for reader in readers:
            reader.join(30)
    assert max(busy) <= WORKERS + 1, busy
    # Nobody was refused for it: the permits moved between processes, every read was answered
    # and every batch's reads went through.
    assert answers and set(answers) == {200}, sorted(set(answers))
    assert {live.wait_final(run_id)["status"] for run_id in started} == {"succeeded"}
