"""Behind PgBouncer in transaction pooling (LEDGER_URL ...?pool_mode=transaction): a few server
sessions serve every client, and claims still give each slot one run — the per-job advisory lock
is transaction-scoped — while nothing relies on a session (no prepared statements, no SET)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from service.errors import ConfigError
from service.ledger import Ledger, open_ledger
from tests.support.ledgers import HOUR, PROCESSES, T0, THREADS, ask, at_once, in_processes
from tests.support.live import LiveService
from tests.support.pgbouncer import PgBouncer
from tests.support.postgres import PostgresServer

POOL = 2


@pytest.fixture
def pooled(postgres_server: PostgresServer, postgres_url: str) -> Iterator[tuple[str, str]]:
    """(LEDGER_URL through PgBouncer in transaction pooling, the direct URL) of a fresh database."""
    with PgBouncer(postgres_server, pool_size=POOL) as bouncer:
        yield f"{bouncer.url(postgres_url)}?pool_mode=transaction", postgres_url


def _server_sessions(direct_url: str) -> int:
    database = direct_url.rsplit("/", 1)[1]
    with psycopg.connect(direct_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (database,),
        ).fetchone()
    return int(row[0]) if row else 0


def test_it_claims_each_slot_once_through_pgbouncer_in_transaction_pooling(pooled: tuple[str, str]) -> None:
    url, direct = pooled
    # Instances starting together migrate through the pooler: the migration's lock is transactional.
    at_once(4, lambda _: open_ledger(url).ensure_schema())
    ledgers: list[Ledger] = [open_ledger(url) for _ in range(THREADS)]
    claims = at_once(THREADS, lambda i: ledgers[i].claim(ask(instance=f"i-{i}"), T0))
    assert [c.outcome for c in claims].count("new") == 1
    assert len({c.run.id for c in claims}) == 1
    # The overlap rule reads other slots of the job: it holds across pooled sessions too.
    claims = at_once(THREADS, lambda i: ledgers[i].claim(ask(T0 + (i + 1) * HOUR, job="monthly"), T0))
    assert sorted(c.outcome for c in claims) == ["new"] + ["overlap"] * (THREADS - 1)
    answers = in_processes(url, [ask(T0 + 99 * HOUR, job="weekly") for _ in range(PROCESSES)])
    assert [outcome for outcome, _ in answers].count("new") == 1, answers
    # Many more statements than psycopg's prepare threshold, from every client, on 2 server sessions.
    at_once(THREADS, lambda i: [ledgers[i].runs(job="monthly", limit=5) for _ in range(20)])
    assert _server_sessions(direct) <= POOL
    ledger = ledgers[0]
    assert isinstance(ledger, Ledger) and getattr(ledger, "transaction_pooling", False)
    assert len(ledger.runs(limit=100)) == 1 + THREADS + 1


def test_it_runs_a_batch_for_an_instance_whose_ledger_is_behind_pgbouncer(
    pooled: tuple[str, str], tmp_path: Path
) -> None:
    url, direct = pooled
    with LiveService(tmp_path, workers=2, LEDGER_URL=url) as live:
        first = live.post("count", live.mint("count", "2026-11-22T15:00:00Z"))
        again = live.post("count", live.mint("count", "2026-11-22T15:00:00Z"))
        assert (first.status, again.status) == (202, 200)
        assert again.body["id"] == first.body["id"]
        assert live.wait_final(first.body["id"])["status"] == "succeeded"
        assert len(live.executions("count")) == 1
        assert _server_sessions(direct) <= POOL


def test_it_refuses_a_pool_mode_it_does_not_know_in_one_line() -> None:
    with pytest.raises(ConfigError, match="pool_mode must be 'session' or 'transaction', not 'statement'"):
        open_ledger("postgresql://batch@127.0.0.1:6432/batch?pool_mode=statement")
    ledger = open_ledger("postgresql://batch@127.0.0.1:6432/batch?application_name=i-1&pool_mode=transaction")
    assert getattr(ledger, "transaction_pooling", False) is True
    assert getattr(open_ledger("postgresql://batch@127.0.0.1/batch"), "transaction_pooling", True) is False
