"""A large ledger in seconds: finished runs written by one SQL statement through the product's schema.

Shared by the query-plan tests and `make bench`'s growth section. The rows look like a fleet's
history: `jobs` jobs named job-000, job-001, ..., one slot after another, spread evenly over
`span` (three years) that ends `end`; most runs succeeded, one in 50 failed, one in 500 was
abandoned and one in 700 interrupted (all long ago, so no sweep should read them); every failed slot has
its watchdog record.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from service.ledger import Ledger

END = datetime(2026, 1, 1, tzinfo=UTC)
JOBS = 200
SPAN = timedelta(days=365 * 3)

# One expression per column, in the backend's dialect; `i` is the row number, `step` the seconds
# between two slots of one job, `base` the first slot.
_STATUS = (
    "CASE WHEN i % 500 = 7 THEN 'abandoned' WHEN i % 700 = 11 THEN 'interrupted'"
    " WHEN i % 50 = 3 THEN 'failed' ELSE 'succeeded' END"
)
_SQLITE = f"""
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ?),
t(i, s) AS (SELECT i, unixepoch(?) + (i / ?) * ? FROM n)
INSERT INTO runs (id, job, slot, attempt, status, trigger, created_at, instance, started_at,
                  heartbeat_at, finished_at, error, params, target)
SELECT printf('%012x', s * 1000) || lower(hex(randomblob(10))), printf('job-%03d', i % ?),
       strftime('%Y-%m-%dT%H:%M:%S.000000Z', s, 'unixepoch'), 1, {_STATUS}, 'schedule',
       strftime('%Y-%m-%dT%H:%M:%S.000000Z', s + 1, 'unixepoch'), 'i-' || (i % 6),
       strftime('%Y-%m-%dT%H:%M:%S.000000Z', s + 2, 'unixepoch'),
       strftime('%Y-%m-%dT%H:%M:%S.000000Z', s + 30, 'unixepoch'),
       strftime('%Y-%m-%dT%H:%M:%S.000000Z', s + 60, 'unixepoch'), NULL, '{{}}', ''
FROM t
"""  # noqa: S608 - built from constants
_POSTGRES = f"""
INSERT INTO runs (id, job, slot, attempt, status, trigger, created_at, instance, started_at,
                  heartbeat_at, finished_at, error, params, target)
SELECT lpad(to_hex((extract(epoch FROM s) * 1000)::bigint), 12, '0') || left(md5(random()::text || i), 20),
       'job-' || lpad((i % ?)::text, 3, '0'), s, 1, {_STATUS},
       'schedule', s + interval '1 second', 'i-' || (i % 6), s + interval '2 seconds',
       s + interval '30 seconds', s + interval '60 seconds', NULL, '{{}}', ''
FROM (SELECT i, ?::timestamptz + (i / ?) * ? * interval '1 second' AS s
      FROM generate_series(0, ? - 1) AS i) AS t
"""  # noqa: S608 - built from constants


def job_names(jobs: int = JOBS) -> list[str]:
    """The names the bulk rows use."""
    return [f"job-{n:03d}" for n in range(jobs)]


def fill(
    ledger: Ledger,
    runs: int,
    *,
    jobs: int = JOBS,
    span: timedelta = SPAN,
    end: datetime = END,
    statistics: bool = True,
) -> None:
    """Add `runs` finished runs of `jobs` jobs over `span` ending at `end` (one statement).

    Ids are made as the product makes them (the time in ms, then random): fill again to add more.
    """
    if runs <= 0:
        return
    assert isinstance(ledger, Ledger)
    per_job = -(-runs // jobs)
    step = max(1, int(span.total_seconds()) // per_job)
    base = end - timedelta(seconds=step * per_job)
    if _backend(ledger) == "sqlite":
        ledger._query(_SQLITE, (runs, base.strftime("%Y-%m-%d %H:%M:%S"), jobs, step, jobs))
    else:
        ledger._query(_POSTGRES, (jobs, base, jobs, step, runs))
    # The watchdog's records: each failed slot just added was reported once, when it ended. Only
    # the rows this call added are read (through runs_status_created): reading every failed run
    # would pass the whole table through the page cache, so that what a caller times next would
    # find a cold cache at 1 M runs and a warm one at 0.
    added: tuple[Any, Any] = (base, end + timedelta(minutes=1))
    if _backend(ledger) == "sqlite":
        added = (ledger._encode_time(added[0]), ledger._encode_time(added[1]))
    ledger._query(
        "INSERT INTO missed_slots (job, slot, alerted_at) SELECT job, slot, finished_at FROM runs"
        " WHERE status = 'failed' AND created_at >= ? AND created_at <= ?"
        " ON CONFLICT (job, slot) DO NOTHING",
        added,
    )
    if statistics:
        analyze(ledger)


def analyze(ledger: Ledger) -> None:
    """Refresh the planner's statistics (PostgreSQL's autovacuum would, a little later)."""
    assert isinstance(ledger, Ledger)
    if _backend(ledger) == "postgres":
        ledger._query("ANALYZE")


def plan(ledger: Ledger, sql: str, args: Sequence[Any]) -> list[str]:
    """The backend's query plan of one statement, one line per step, without running it."""
    assert isinstance(ledger, Ledger)
    if _backend(ledger) == "sqlite":
        return [str(row[-1]) for row in ledger._query(f"EXPLAIN QUERY PLAN {sql}", args)]
    return [str(row[0]) for row in ledger._query(f"EXPLAIN {sql}", args)]


@contextmanager
def recorded(ledger: Ledger) -> Iterator[list[tuple[str, tuple[Any, ...]]]]:
    """Every statement the ledger sends while inside, with its arguments (the real ones still run).

    The ledger's class is swapped for a subclass whose `_query` (the one hook every backend
    sends its SQL through) writes each statement down first.
    """
    assert isinstance(ledger, Ledger)
    statements: list[tuple[str, tuple[Any, ...]]] = []
    original = type(ledger)

    class Recording(original):  # type: ignore[valid-type,misc]
        def _query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
            statements.append((sql, tuple(args)))
            return super()._query(sql, args)

    ledger.__class__ = Recording
    try:
        yield statements
    finally:
        ledger.__class__ = original


def _backend(ledger: Ledger) -> str:
    from service.ledger.sqlite import SqliteLedger

    return "sqlite" if isinstance(ledger, SqliteLedger) else "postgres"
