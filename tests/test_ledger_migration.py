"""Schema migration on every backend: a ledger written by version 2 (with runs and watchdog records
in it) opens as version 3 at start, its data intact and its queries on the new indexes."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import timedelta
from pathlib import Path

from service.ledger import Status, open_ledger
from service.ledger.base import Ledger
from tests.support import bulk
from tests.support.ledgers import HOUR, T0, at_once

V3_INDEXES = {
    "runs_job_created",
    "runs_job_status_created",
    "runs_status_created",
    "runs_created_attempt",
    "runs_slot_created",
    "runs_lost_finished",
    "missed_slots_alerted",
}
# Indexes of version 2 that a wider one of version 3 covers.
V2_ONLY = {"runs_job_status", "runs_created", "runs_status_lease", "runs_job_slot_status"}


def _version_2(url: str) -> Ledger:
    """A store with the schema exactly as release 2 left it, and some history in it."""
    ledger = open_ledger(url)
    assert isinstance(ledger, Ledger)
    if url.startswith("sqlite"):
        from service.ledger import sqlite

        script = sqlite._SCHEMA
    else:
        from service.ledger import postgres_schema

        script = postgres_schema.MIGRATIONS[1] + postgres_schema.MIGRATIONS[2]
        ledger._query("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    for statement in filter(str.strip, script.split(";")):
        ledger._query(statement)
    ledger._query("INSERT INTO schema_version (version) VALUES (2)")
    bulk.fill(ledger, 2_000, jobs=20, span=timedelta(days=365), end=T0)
    since = ledger._encode_time(T0 - 400 * HOUR)
    ledger._query("INSERT INTO watched_jobs (job, since) VALUES (?, ?)", ("job-001", since))
    return ledger


def _indexes(ledger: Ledger, url: str) -> set[str]:
    if url.startswith("sqlite"):
        rows = ledger._query("SELECT name FROM sqlite_master WHERE type = 'index'")
    else:
        rows = ledger._query("SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()")
    return {row[0] for row in rows}


def test_it_migrates_a_version_2_ledger_with_history_to_version_3(ledger_url: str) -> None:
    old = _version_2(ledger_url)
    assert V2_ONLY <= _indexes(old, ledger_url)
    # Instances of the new release start together: each runs the migration's check, one applies it.
    at_once(4, lambda _: open_ledger(ledger_url).ensure_schema())
    ledger = open_ledger(ledger_url)
    ledger.ensure_schema()
    assert isinstance(ledger, Ledger)
    assert ledger._query("SELECT version FROM schema_version") == [(3,)]
    indexes = _indexes(ledger, ledger_url)
    assert V3_INDEXES <= indexes and not V2_ONLY & indexes
    # The history is all there and answers through the new indexes.
    assert ledger._query("SELECT count(*) FROM runs") == [(2_000,)]
    assert len(ledger.runs(job="job-003", limit=1000)) == 100
    assert len(ledger.runs(status=Status.FAILED, limit=1000)) == 40
    assert set(ledger.last_runs(bulk.job_names(20))) == set(bulk.job_names(20))
    # The watchdog keeps when it began watching, and now remembers where it last looked.
    assert ledger.watch_from(["job-001"], T0) == {"job-001": T0 - 400 * HOUR}
    ledger.mark_checked("job-001", T0)
    assert ledger.watch_from(["job-001"], T0 + HOUR) == {"job-001": T0}
    assert ledger.prune(T0 + timedelta(days=1)) == 2_000
    assert ledger._query("SELECT count(*) FROM missed_slots") == [(0,)]


def test_processes_starting_at_once_on_a_sqlite_file_not_yet_in_wal_all_start(tmp_path: Path) -> None:
    """Switching to WAL needs the file to itself, and SQLite refuses a racing switch at once
    ("database is locked", no busy timeout): each start must wait its turn, not fail. Before the
    fix about one round in seven failed; forty rounds catch it."""
    for round_ in range(40):
        path = tmp_path / f"round-{round_}.db"
        with closing(sqlite3.connect(path)) as conn:  # a file written before WAL, as by an older release
            conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
            conn.commit()
        url = f"sqlite:///{path}"
        at_once(6, lambda _, url=url: open_ledger(url).ensure_schema())  # type: ignore[misc]
        with closing(sqlite3.connect(path)) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
            assert conn.execute("SELECT version FROM schema_version").fetchall() == [(3,)]
