"""The PostgreSQL ledger's schema: its version and the migrations that bring a database to it."""

from __future__ import annotations

from service.ledger.sql import INDEXES_3

SCHEMA_VERSION = 3
# Migration N brings the schema from version N - 1 to N; each is idempotent, and all run inside
# one transaction under the migration lock, so a half-applied migration is never visible.
MIGRATIONS = {
    1: """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    job TEXT NOT NULL,
    slot TIMESTAMPTZ NOT NULL,
    attempt INTEGER NOT NULL,
    status TEXT NOT NULL,
    trigger TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    event_id TEXT,
    instance TEXT,
    started_at TIMESTAMPTZ,
    heartbeat_at TIMESTAMPTZ,
    finished_at TIMESTAMPTZ,
    lease_until TIMESTAMPTZ,
    error TEXT,
    params JSONB NOT NULL DEFAULT '{}',
    target TEXT NOT NULL DEFAULT '',
    UNIQUE (job, slot, target, attempt)
);
CREATE INDEX IF NOT EXISTS runs_job_status ON runs (job, status);
CREATE INDEX IF NOT EXISTS runs_created ON runs (created_at);
CREATE INDEX IF NOT EXISTS runs_status_lease ON runs (status, lease_until);
CREATE TABLE IF NOT EXISTS used_tokens (jti TEXT PRIMARY KEY, expires_at TIMESTAMPTZ NOT NULL);
CREATE INDEX IF NOT EXISTS used_tokens_expiry ON used_tokens (expires_at);
""",
    # 2: metrics, retention and the missed-run watchdog.
    2: """
CREATE INDEX IF NOT EXISTS runs_instance_finished ON runs (instance, finished_at);
CREATE INDEX IF NOT EXISTS runs_finished ON runs (finished_at);
CREATE INDEX IF NOT EXISTS runs_job_slot_status ON runs (job, slot, status);
CREATE TABLE IF NOT EXISTS watched_jobs (job TEXT PRIMARY KEY, since TIMESTAMPTZ NOT NULL);
CREATE TABLE IF NOT EXISTS missed_slots (
    job TEXT NOT NULL,
    slot TIMESTAMPTZ NOT NULL,
    alerted_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (job, slot)
);
""",
    # 3: indexes for reads, sweeps and prunes bounded by their answer (sql.INDEXES_3, BENCHMARKS.md);
    # the watchdog remembers where it last looked.
    3: INDEXES_3
    + """
ALTER TABLE watched_jobs ADD COLUMN IF NOT EXISTS checked_until TIMESTAMPTZ;
-- Jobs paused fleet-wide: who (the token's iss), why, since when, until when (NULL: until resumed).
CREATE TABLE IF NOT EXISTS job_pauses (
    job TEXT PRIMARY KEY,
    paused_at TIMESTAMPTZ NOT NULL,
    paused_by TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    until TIMESTAMPTZ
);
CREATE TABLE IF NOT EXISTS run_logs (
    run_id TEXT NOT NULL,
    pos BIGINT NOT NULL,
    chunk BYTEA NOT NULL,
    PRIMARY KEY (run_id, pos)
);
-- /readyz proves the ledger takes a write by upserting its instance's row (throttled per worker).
CREATE TABLE IF NOT EXISTS ready_probes (instance TEXT PRIMARY KEY, probed_at TIMESTAMPTZ NOT NULL);
""",
}
