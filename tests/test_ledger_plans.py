"""The ledger at scale: on a ledger of 200 k runs, every hot statement is an index search bounded by
its answer — asserted on each backend's query plan (never on timings)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest

from service.ledger import Ledger, Status, open_ledger
from tests.support import bulk
from tests.support.ledgers import ask
from tests.support.postgres import PostgresServer

RUNS = 200_000
NOW = bulk.END + timedelta(days=1)
FIRST_DAY = bulk.END - bulk.SPAN
# The unique (job, slot, target, attempt) constraint's index, as each backend names it.
UNIQUE = ("sqlite_autoindex_runs_2", "runs_job_slot_target_attempt_key")

# What each request, sweep and check sends, and the indexes its plan must search (any one of them).
HOT: dict[str, tuple[Callable[[Ledger], Any], tuple[str, ...]]] = {
    "GET /v1/runs?job= (a job with runs)": (lambda led: led.runs(job="job-007"), ("runs_job_created",)),
    "GET /v1/runs?job= (a job without runs)": (lambda led: led.runs(job="no-runs"), ("runs_job_created",)),
    "GET /v1/runs?status=failed": (lambda led: led.runs(status=Status.FAILED), ("runs_status_created",)),
    # Nearly every run succeeded: PostgreSQL's statistics rightly prefer walking the newest runs.
    "GET /v1/runs?status=succeeded": (
        lambda led: led.runs(status=Status.SUCCEEDED),
        ("runs_status_created", "runs_created_attempt"),
    ),
    "GET /v1/runs?job=&status=": (
        lambda led: led.runs(job="job-007", status=Status.FAILED),
        ("runs_job_status_created",),
    ),
    "GET /v1/runs?slot=": (lambda led: led.runs(slot=bulk.END), ("runs_slot_created",)),
    "GET /v1/runs?job=&slot=": (
        lambda led: led.runs(job="job-001", slot=bulk.END),
        ("runs_slot_created", *UNIQUE),
    ),
    "GET /v1/runs (newest)": (lambda led: led.runs(), ("runs_created_attempt",)),
    "GET /v1/runs (a page back)": (
        lambda led: led.runs(before=bulk.END - timedelta(days=400)),
        ("runs_created_attempt",),
    ),
    "GET /v1/jobs": (lambda led: led.last_runs([*bulk.job_names(), "no-runs"]), ("runs_job_created",)),
    "GET /v1/jobs: last successes": (
        lambda led: led.last_runs([*bulk.job_names(), "no-runs"], Status.SUCCEEDED),
        ("runs_job_status_created",),
    ),
    "GET /v1/jobs, last success per job (metrics)": (
        lambda led: led.last_runs(bulk.job_names(), Status.SUCCEEDED),
        ("runs_job_status_created",),
    ),
    "launcher: renew every lease": (
        lambda led: led.renew([f"{n:032x}" for n in range(8)], NOW, timedelta(minutes=1)),
        ("runs_pkey", "sqlite_autoindex_runs_1", "runs_status_created"),
    ),
    "launcher: the runs it adopts (every heartbeat)": (
        lambda led: led.active_on("i-1"),
        ("runs_status_created", "runs_instance_finished", "runs_finished"),
    ),
    "claim": (
        lambda led: led.claim(ask(NOW, job="job-002", token_id="t-1", token_expires=NOW), NOW),
        UNIQUE,
    ),
    "keeper: expire leases": (
        lambda led: led.expire_leases(NOW, timedelta(minutes=10)),
        ("runs_status_created",),
    ),
    "keeper: launcher locks": (
        lambda led: led.launcher_locks(timedelta(seconds=10)),
        ("runs_status_created",),
    ),
    "keeper: recoverable": (
        lambda led: led.recoverable(NOW - timedelta(days=2)),
        ("runs_lost_finished", "runs_finished"),
    ),
    "keeper: finished on this instance": (
        lambda led: led.finished_on("i-1", NOW - timedelta(seconds=15)),
        ("runs_instance_finished", "runs_finished"),
    ),
    "watchdog: succeeded slots": (
        lambda led: led.succeeded_slots("job-001", NOW - timedelta(days=40), NOW),
        UNIQUE,
    ),
    "prune one day": (
        lambda led: led.prune(FIRST_DAY + timedelta(days=1)),
        ("runs_finished", "missed_slots_alerted"),
    ),
    "runs between (history jobs)": (
        lambda led: led.runs_between(NOW - timedelta(days=1), NOW),
        ("runs_created_attempt",),
    ),
}
# Statements whose plan may read an index from its end: a LIMIT bounds them.
LIMITED = {"GET /v1/runs (newest)", "GET /v1/runs (a page back)"}
# Statements that sort what they found (a handful of lost runs, the runs of one slot), not a table.
SORTS_ITS_ANSWER = {"keeper: recoverable", "GET /v1/runs?slot=", "GET /v1/runs?job=&slot="}
# What only some backends send a statement for (SQLite has no launcher locks: one host).
PER_BACKEND = {"keeper: launcher locks"}
# Tables of one row per job, token or instance, and catalogues: bounded by the fleet, not by history.
SMALL = {"watched_jobs", "job_pauses", "used_tokens", "run_logs", "ready_probes", "pg_database", "pg_locks"}


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def big(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ledger]:
    """A ledger of 200 k finished runs of 200 jobs over three years, per backend."""
    server: PostgresServer | None = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('plans') / 'ledger.db'}"
    else:
        server = request.getfixturevalue("postgres_server")
        server.start()
        url = server.create_database()
    ledger = open_ledger(url)
    ledger.ensure_schema()
    bulk.fill(ledger, RUNS)
    yield ledger
    ledger.close()
    if server is not None:
        server.drop_database(url)


@pytest.mark.parametrize("label", list(HOT))
def test_it_answers_each_hot_statement_by_an_index_search_on_a_large_ledger(big: Ledger, label: str) -> None:
    action, indexes = HOT[label]
    with bulk.recorded(big) as statements:
        action(big)
    assert statements or label in PER_BACKEND
    if not statements:
        return
    plans = [(sql, bulk.plan(big, sql, args)) for sql, args in statements]
    problems = [f"{sql[:90]}...: {line}" for sql, lines in plans for line in lines if _bad(line, label)]
    assert not problems, "\n".join(problems)
    used = " ".join(line for _, lines in plans for line in lines)
    assert any(re.search(rf"\b{index}\b", used) for index in indexes), (label, plans)


def _bad(line: str, label: str) -> bool:
    """A plan step that reads a whole table (or index) or sorts more than the statement's answer."""
    line = line.strip().removeprefix("->").strip()
    # SQLite: SCAN <table> [USING ...]; a list of constants or a CTE is not a table.
    scanned = re.match(r"SCAN (\w+)", line)
    if scanned and scanned.group(1) not in ("names", *SMALL) and "CONSTANT ROWS" not in line:
        return not (label in LIMITED and "USING INDEX" in line)
    if "TEMP B-TREE" in line:
        return label not in SORTS_ITS_ANSWER
    # PostgreSQL: a sequential scan of a table that grows with history, or a sort of many rows.
    seq = re.match(r"Seq Scan on (\w+)", line)
    if seq:
        return seq.group(1) not in SMALL
    sort = re.match(r"(Incremental )?Sort .*rows=(\d+)", line)
    return bool(sort) and int(sort.group(2)) > 2_000
