"""SQLite ledger: the embedded default for one host, safe across gunicorn workers and processes."""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from service.errors import LedgerUnavailable
from service.ledger.base import Ledger
from service.ledger.sql import ACTIVE_SQL, INDEXES_3

SCHEMA_VERSION = 3
# The schema as of version 2, run on a store below version 2; every statement is idempotent, so it
# also brings a version-1 file to version 2. Later versions are migrations below.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    job TEXT NOT NULL,
    slot TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    status TEXT NOT NULL,
    trigger TEXT NOT NULL,
    created_at TEXT NOT NULL,
    event_id TEXT,
    instance TEXT,
    started_at TEXT,
    heartbeat_at TEXT,
    finished_at TEXT,
    lease_until TEXT,
    error TEXT,
    params TEXT NOT NULL DEFAULT '{}',
    target TEXT NOT NULL DEFAULT '',
    UNIQUE (job, slot, target, attempt)
);
CREATE INDEX IF NOT EXISTS runs_job_status ON runs (job, status);
CREATE INDEX IF NOT EXISTS runs_created ON runs (created_at);
CREATE INDEX IF NOT EXISTS runs_status_lease ON runs (status, lease_until);
CREATE TABLE IF NOT EXISTS used_tokens (jti TEXT PRIMARY KEY, expires_at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS used_tokens_expiry ON used_tokens (expires_at);
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS runs_instance_finished ON runs (instance, finished_at);
CREATE INDEX IF NOT EXISTS runs_finished ON runs (finished_at);
CREATE INDEX IF NOT EXISTS runs_job_slot_status ON runs (job, slot, status);
CREATE TABLE IF NOT EXISTS watched_jobs (job TEXT PRIMARY KEY, since TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS missed_slots (
    job TEXT NOT NULL,
    slot TEXT NOT NULL,
    alerted_at TEXT NOT NULL,
    PRIMARY KEY (job, slot)
);
"""
# Migration N brings the schema from version N - 1 to N (N > 2); each runs once, in the same
# write transaction that reads and records the version, so no process sees half of one.
# SQLite has no ADD COLUMN IF NOT EXISTS: the version check is what keeps these single-shot.
_MIGRATIONS = {
    # 3: indexes for reads, sweeps and prunes bounded by their answer (sql.INDEXES_3, BENCHMARKS.md);
    # the watchdog remembers where it last looked.
    3: INDEXES_3
    + """
ALTER TABLE watched_jobs ADD COLUMN checked_until TEXT;
-- Jobs paused fleet-wide: who (the token's iss), why, since when, until when (NULL: until resumed).
CREATE TABLE IF NOT EXISTS job_pauses (
    job TEXT PRIMARY KEY,
    paused_at TEXT NOT NULL,
    paused_by TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    until TEXT
);
CREATE TABLE IF NOT EXISTS run_logs (
    run_id TEXT NOT NULL,
    pos INTEGER NOT NULL,
    chunk BLOB NOT NULL,
    PRIMARY KEY (run_id, pos)
);
-- /readyz proves the ledger takes a write by upserting its instance's row (throttled per worker).
CREATE TABLE IF NOT EXISTS ready_probes (instance TEXT PRIMARY KEY, probed_at TEXT NOT NULL);
""",
}
# Prune: the runs (and watchdog records) one write transaction deletes, and the oldest runs past
# the cutoff read at a time to be deleted in such batches. At most 999 per batch: SQLite before
# 3.32 binds no more parameters to one statement.
PRUNE_BATCH = 500
PRUNE_WINDOW = 10_000
# Fixed width, so that text order is time order in SQL comparisons.
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


class SqliteLedger(Ledger):
    """The ledger in one SQLite file in WAL mode; one connection per process and thread."""

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = str(path)

    def ensure_schema(self) -> None:
        """Create the tables and switch the file to WAL; idempotent."""
        try:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LedgerUnavailable(f"SQLite ledger directory unusable: {exc}") from exc
        conn = self._connection()
        with self._errors():
            _switch_to_wal(conn)
            # BEGIN IMMEDIATE holds the write lock: processes starting at once migrate in turn.
            with self._transaction(conn):
                conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
                (current,) = conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()
                if current < 2:
                    for statement in _statements(_SCHEMA):
                        conn.execute(statement)
                # A newer schema written by a newer release is left alone: migrations only add.
                for version in range(max(current, 2) + 1, SCHEMA_VERSION + 1):
                    for statement in _statements(_MIGRATIONS[version]):
                        conn.execute(statement)
                if current < SCHEMA_VERSION:
                    conn.execute("DELETE FROM schema_version")
                    conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))

    @contextmanager
    def _claim_transaction(self, job: str) -> Iterator[None]:
        # BEGIN IMMEDIATE takes the database's write lock up front: claims serialise across
        # every worker and process on the host, with no read-then-write window.
        with self._transaction(self._connection()):
            yield

    def _delete_finished_before(self, before: datetime) -> int:
        # SQLite deletes a row's every index entry at once, under the database's one write lock,
        # which every claim on the host waits for. In batches of PRUNE_BATCH runs, one transaction
        # each (the runs and their logs), a claim waits behind one batch: 5-7 ms at 1 M runs, where
        # a backlog of 20,000 runs held the lock for 0.2-0.35 s in one statement (BENCHMARKS.md,
        # table 6). A window of the oldest runs past the cutoff is read through runs_finished
        # (bounded by its answer) and deleted a few jobs at a time: a batch's entries in the
        # job-leading indexes then sit on adjacent leaf pages, not one on each job's (a day of
        # 200 jobs at 1 M runs: 861 pages written, against 1,423 in batches taken in time order).
        cutoff = self._encode_time(before)
        pruned = 0
        while True:
            found = self._query(
                f"SELECT id, job FROM runs WHERE finished_at < ? AND status NOT IN {ACTIVE_SQL}"
                " ORDER BY finished_at LIMIT ?",
                (cutoff, PRUNE_WINDOW),
            )
            ids = [run_id for _, run_id in sorted((job, run_id) for run_id, job in found)]
            for start in range(0, len(ids), PRUNE_BATCH):
                batch = ids[start : start + PRUNE_BATCH]
                marks = ", ".join("?" for _ in batch)
                with self._transaction(self._connection()):
                    self._query(f"DELETE FROM run_logs WHERE run_id IN ({marks})", batch)
                    deleted = self._query(
                        f"DELETE FROM runs WHERE id IN ({marks}) AND status NOT IN {ACTIVE_SQL}"
                        " RETURNING id",
                        batch,
                    )
                pruned += len(deleted)
            if len(found) < PRUNE_WINDOW:
                break
        while True:
            alerted = self._query(
                "DELETE FROM missed_slots WHERE (job, slot) IN (SELECT job, slot FROM missed_slots"
                " WHERE alerted_at < ? ORDER BY alerted_at LIMIT ?) RETURNING job",
                (cutoff, PRUNE_BATCH),
            )
            if len(alerted) < PRUNE_BATCH:
                break
        return pruned

    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._errors():
            return self._connection().execute(sql, tuple(args)).fetchall()

    def _encode_time(self, value: datetime) -> str:
        return value.astimezone(UTC).strftime(_TIME_FORMAT)

    def _decode_time(self, value: Any) -> datetime:
        # fromisoformat reads the fixed-width form ~20x faster than strptime.
        return datetime.fromisoformat(value)

    def _connection(self) -> sqlite3.Connection:
        state = self._state()
        conn: sqlite3.Connection | None = getattr(state, "conn", None)
        if conn is None:
            with self._errors():
                conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
                # NORMAL in WAL mode: a commit survives a process crash; only an OS crash or power
                # loss may lose the newest commits (https://www.sqlite.org/pragma.html#pragma_synchronous).
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("PRAGMA busy_timeout=30000")
                # An 8 MiB page cache (2,048 pages), not SQLite's 2 MiB: a prune batch of 500 runs of
                # as many jobs dirties up to ~2,000 pages (each run's entry on its own leaf of each
                # job-leading index), and a transaction that outgrows its cache spills mid-way. At
                # 1 M runs a day's prune in one statement took 1.4-1.7x longer with the default, and
                # 16-64 MiB gained nothing more (BENCHMARKS.md, table 6). The cache fills only as
                # its connection reads: at most 8 MiB x (WEB_CONCURRENCY + 2) per instance (each web
                # worker, the launcher and the keeper hold one connection).
                conn.execute("PRAGMA cache_size=-8192")
            state.conn = conn
        return conn

    @contextmanager
    def _transaction(self, conn: sqlite3.Connection) -> Iterator[None]:
        with self._errors():
            conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        with self._errors():
            conn.execute("COMMIT")

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise LedgerUnavailable(f"SQLite ledger unavailable: {exc}") from exc


def _switch_to_wal(conn: sqlite3.Connection, patience: float = 30.0) -> None:
    """Put the file in WAL mode (it stays so); processes starting at once on a file not yet in it
    take turns.

    The switch needs the file to itself, and SQLite answers "database is locked" at once, without
    its busy timeout, to a process that read the file while another one was switching it: the
    switch is tried again, for up to `patience` seconds.
    """
    deadline = time.monotonic() + patience
    while True:
        try:
            (mode,) = conn.execute("PRAGMA journal_mode").fetchone()
            if str(mode).lower() != "wal":
                conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(random.uniform(0.01, 0.05))  # noqa: S311 - jitter, not secrecy


def _statements(script: str) -> list[str]:
    """A script's statements, one by one: executescript would commit the open transaction first."""
    # A plain split: the schema's statements hold no ';' of their own (no triggers, no literals).
    return [statement.strip() for statement in script.split(";") if statement.strip()]
