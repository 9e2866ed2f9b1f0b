"""The ledger's storage primitives in SQL shared by the SQLite and PostgreSQL backends."""

from __future__ import annotations

import json
import logging
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from service.errors import CorruptRecord
from service.ledger.clock import Moment, StoreTime
from service.ledger.records import Run, Status
from service.slots import utcnow

if TYPE_CHECKING:
    from service.ledger.budget import ConnectionBudget

COLUMNS = (
    "id",
    "job",
    "slot",
    "attempt",
    "status",
    "trigger",
    "created_at",
    "event_id",
    "instance",
    "started_at",
    "heartbeat_at",
    "finished_at",
    "lease_until",
    "error",
    "params",
    "target",
)
_TIMES = frozenset({"slot", "created_at", "started_at", "heartbeat_at", "finished_at", "lease_until"})
_SELECT = f"SELECT {', '.join(COLUMNS)} FROM runs"
_RETURNING = f" RETURNING {', '.join(COLUMNS)}"
#: The active statuses as an SQL list: what no prune or sweep may delete.
ACTIVE_SQL = "('accepted', 'running')"
# Schema version 3's indexes, the same on every backend: each list, sweep and prune below is an
# index search bounded by its answer (tests/test_ledger_plans.py asserts the plans). Indexes that
# a wider one now covers go.
INDEXES_3 = """
CREATE INDEX IF NOT EXISTS runs_job_created ON runs (job, created_at, attempt);
CREATE INDEX IF NOT EXISTS runs_job_status_created ON runs (job, status, created_at, attempt);
CREATE INDEX IF NOT EXISTS runs_status_created ON runs (status, created_at, attempt);
CREATE INDEX IF NOT EXISTS runs_created_attempt ON runs (created_at, attempt);
CREATE INDEX IF NOT EXISTS runs_slot_created ON runs (slot, created_at, attempt);
CREATE INDEX IF NOT EXISTS runs_lost_finished ON runs (status, finished_at)
    WHERE status IN ('abandoned', 'interrupted');
DROP INDEX IF EXISTS runs_job_status;
DROP INDEX IF EXISTS runs_created;
DROP INDEX IF EXISTS runs_status_lease;
DROP INDEX IF EXISTS runs_job_slot_status;
CREATE INDEX IF NOT EXISTS missed_slots_alerted ON missed_slots (alerted_at);
"""


log = logging.getLogger("batch_trigger.ledger")


class SqlStatements(ABC):
    """The ledger's statements in portable SQL; a backend supplies its connection and time codec."""

    #: SQL for the store's own time, where a backend judges leases by it (PostgreSQL); None: this
    #: host's clock (service.ledger.clock).
    _store_now_sql: str | None = None

    def __init__(self) -> None:
        self._local = threading.local()
        self._pid = os.getpid()
        # A connection inherited across fork shares its file or socket with the parent: the child
        # must neither use nor close it (https://www.sqlite.org/howtocorrupt.html#fork; closing a
        # PostgreSQL one ends the parent's session), so the child keeps the references and opens its own.
        self._inherited: list[Any] = []

    def ping(self) -> None:
        """Raise LedgerUnavailable unless the store answers a query."""
        self._query("SELECT 1")

    def close(self) -> None:
        """Close this thread's connection."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._pid == os.getpid():
            conn.close()
        self._local = threading.local()

    def share_connections(self, budget: ConnectionBudget | None, *, brief: bool = False) -> None:
        """Connect only while holding one of the instance's permits (service.ledger.budget).

        `brief`: let go after every statement outside a claim (a batch, which reads rarely and may
        run for hours). A backend without a connection limit (SQLite) has nothing to share.
        """
        return None

    def _state(self) -> threading.local:
        """This process's and thread's connection slot; a forked child starts with an empty one."""
        if self._pid != os.getpid():
            self._inherited.append(self._local)
            self._local, self._pid = threading.local(), os.getpid()
        return self._local

    def probe_write(self, instance: str) -> None:
        """Raise LedgerUnavailable unless the store takes a write: one upsert of the instance's probe row."""
        self._query(
            "INSERT INTO ready_probes (instance, probed_at) VALUES (?, ?)"
            " ON CONFLICT (instance) DO UPDATE SET probed_at = excluded.probed_at",
            (instance, self._encode_time(utcnow())),
        )

    def _clock(self, now: datetime | None) -> Moment:
        """`now`, or (None) the store's own time: this host's clock unless a backend shares one."""
        if now is None and self._store_now_sql is not None:
            return StoreTime()
        return utcnow() if now is None else now

    def undecodable_rows(self) -> dict[str, str]:
        """Runs found since the last call that could not be read back (id → why), then forgets them."""
        found: dict[str, str] = self.__dict__.pop("_undecodable_rows", {})
        return found

    def _undecodable(self, run_id: str, why: str) -> CorruptRecord:
        """Report a stored run that cannot be decoded; the error to raise where one run was asked for."""
        log.error("ledger row cannot be read back: run %s: %s", run_id, why, extra={"run_id": run_id})
        self.__dict__.setdefault("_undecodable_rows", {})[run_id] = why
        return CorruptRecord(f"run {run_id[:64]} cannot be read back from the ledger ({why[:200]})")

    def _time_sql(self, value: Moment) -> tuple[str, Any]:
        """A time as SQL and its one parameter: a bound value, or the store's clock plus an offset."""
        if isinstance(value, StoreTime):
            assert self._store_now_sql is not None
            return f"({self._store_now_sql} + ?)", value.offset
        return "?", self._encode_time(value)

    @abstractmethod
    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement (placeholders are `?`) and return its rows; errors → LedgerUnavailable."""

    @abstractmethod
    def _encode_time(self, value: datetime) -> Any: ...

    @abstractmethod
    def _decode_time(self, value: Any) -> datetime: ...

    def _encode(self, name: str, value: Any) -> Any:
        if value is None:
            return None
        if name in _TIMES:
            return self._encode_time(value)
        if name == "params":
            return json.dumps(value, separators=(",", ":"), sort_keys=True)
        if name == "status":
            return str(value)
        return value

    def _run(self, row: Sequence[Any]) -> Run:
        values = dict(zip(COLUMNS, row, strict=True))
        try:
            for name in _TIMES:
                if values[name] is not None:
                    values[name] = self._decode_time(values[name])
            params = values["params"]
            values["params"] = json.loads(params) if isinstance(params, str) else (params or {})
            values["status"] = Status(values["status"])
        except (ValueError, TypeError, OverflowError, RecursionError) as exc:
            # A row written by an older release or by hand (a year before 1000 in SQLite, an
            # unknown status): reported, and a listing or a sweep skips it instead of failing.
            raise self._undecodable(str(values["id"]), f"{type(exc).__name__}: {exc}") from None
        return Run(**values)

    def _decoded(self, rows: Sequence[Sequence[Any]]) -> list[Run]:
        """The rows as runs; a row that cannot be decoded is reported (see `_run`) and skipped."""
        runs = []
        for row in rows:
            try:
                runs.append(self._run(row))
            except CorruptRecord:
                continue
        return runs

    def _latest_attempt(self, job: str, slot: datetime, target: str) -> Run | None:
        rows = self._query(
            f"{_SELECT} WHERE job = ? AND slot = ? AND target = ? ORDER BY attempt DESC LIMIT 1",
            (job, self._encode_time(slot), target),
        )
        return self._run(rows[0]) if rows else None

    def _active_run_of_other_slot(self, job: str, slot: datetime, target: str) -> Run | None:
        rows = self._query(
            f"{_SELECT} WHERE job = ? AND target = ? AND status IN {ACTIVE_SQL} AND slot <> ? LIMIT 1",
            (job, target, self._encode_time(slot)),
        )
        # A row that cannot be read back blocks nothing: the keeper abandons it (and alerts) instead.
        blockers = self._decoded(rows)
        return blockers[0] if blockers else None

    def _insert(self, run: Run) -> bool:
        values = [self._encode(name, getattr(run, name)) for name in COLUMNS]
        rows = self._query(
            f"INSERT INTO runs ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
            " ON CONFLICT (job, slot, target, attempt) DO NOTHING RETURNING id",
            values,
        )
        return bool(rows)

    def _transition(self, run_id: str, allowed: set[Status], **changes: Any) -> Run | None:
        assignments, args = [], []
        for name, value in changes.items():
            if isinstance(value, StoreTime):
                sql, arg = self._time_sql(value)
            else:
                sql, arg = "?", self._encode(name, value)
            assignments.append(f"{name} = {sql}")
            args.append(arg)
        statuses = ", ".join("?" for _ in allowed)
        rows = self._query(
            f"UPDATE runs SET {', '.join(assignments)} WHERE id = ? AND status IN ({statuses}){_RETURNING}",
            [*args, run_id, *map(str, allowed)],
        )
        return self._run(rows[0]) if rows else None

    def _abandon_expired(self, now: Moment, accepted_before: Moment, expired_before: Moment) -> list[Run]:
        # One UPDATE decides: where several instances sweep at once, each run changes once.
        # `expired_before` is the lease's end plus the fencing margin: a batch whose lease ran
        # out has stopped itself by then (service.runs.fencing).
        (now_sql, now_arg), (expired_sql, expired_arg), (accepted_sql, accepted_arg) = map(
            self._time_sql, (now, expired_before, accepted_before)
        )
        rows = self._query(
            f"UPDATE runs SET status = 'abandoned', finished_at = {now_sql},"
            " error = 'lease expired: instance ' || COALESCE(instance, '?') || ' stopped renewing it'"
            f" WHERE (status = 'running' AND lease_until < {expired_sql})"
            f" OR (status = 'accepted' AND created_at < {accepted_sql})" + _RETURNING,
            (now_arg, expired_arg, accepted_arg),
        )
        return self._decoded(rows)

    def _renew_leases(self, run_ids: Sequence[str], now: Moment, until: Moment) -> set[str]:
        marks = ", ".join("?" for _ in run_ids)
        (now_sql, now_arg), (until_sql, until_arg) = self._time_sql(now), self._time_sql(until)
        rows = self._query(
            f"UPDATE runs SET heartbeat_at = {now_sql}, lease_until = {until_sql}"
            f" WHERE id IN ({marks}) AND status = 'running' RETURNING id",
            [now_arg, until_arg, *run_ids],
        )
        return {row[0] for row in rows}

    def _select_active_on(self, instance: str) -> list[Run]:
        # Active runs have no finished_at: the (instance, finished_at) index then finds them
        # among the instance's few unfinished runs, not its whole history (every heartbeat).
        rows = self._query(
            f"{_SELECT} WHERE status IN {ACTIVE_SQL} AND instance = ? AND finished_at IS NULL", (instance,)
        )
        return self._decoded(rows)

    def _select_recoverable(self, since: datetime) -> list[Run]:
        rows = self._query(
            f"{_SELECT} AS r WHERE status IN ('abandoned', 'interrupted') AND finished_at >= ?"
            " AND NOT EXISTS (SELECT 1 FROM runs AS n"
            " WHERE n.job = r.job AND n.slot = r.slot AND n.target = r.target AND n.attempt > r.attempt)"
            " ORDER BY finished_at",
            (self._encode_time(since),),
        )
        return self._decoded(rows)

    def _insert_token(self, jti: str, expires_at: datetime) -> bool:
        rows = self._query(
            "INSERT INTO used_tokens (jti, expires_at) VALUES (?, ?)"
            " ON CONFLICT (jti) DO NOTHING RETURNING jti",
            (jti, self._encode_time(expires_at)),
        )
        return bool(rows)

    def _prune_tokens(self, now: datetime) -> None:
        self._query("DELETE FROM used_tokens WHERE expires_at < ?", (self._encode_time(now),))

    def _select_one(self, run_id: str) -> Run | None:
        rows = self._query(f"{_SELECT} WHERE id = ?", (run_id,))
        return self._run(rows[0]) if rows else None

    def _select_many(
        self,
        *,
        job: str | None,
        status: Status | None,
        slot: datetime | None,
        before: datetime | None,
        limit: int,
    ) -> list[Run]:
        where, args = [], []
        for column, value in (
            ("job = ?", job),
            ("status = ?", status),
            ("slot = ?", slot),
            ("created_at < ?", before),
        ):
            if value is not None:
                where.append(column)
                args.append(self._encode_time(value) if isinstance(value, datetime) else str(value))
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        rows = self._query(
            f"{_SELECT}{clause} ORDER BY created_at DESC, attempt DESC LIMIT ?", [*args, limit]
        )
        return self._decoded(rows)

    def _select_finished_on(self, instance: str, after: datetime) -> list[Run]:
        rows = self._query(
            f"{_SELECT} WHERE instance = ? AND finished_at > ? ORDER BY finished_at",
            (instance, self._encode_time(after)),
        )
        return self._decoded(rows)

    def _delete_finished_before(self, before: datetime) -> int:
        cutoff = self._encode_time(before)
        # A run's log goes with the run.
        self._query(
            "DELETE FROM run_logs WHERE run_id IN"
            f" (SELECT id FROM runs WHERE finished_at < ? AND status NOT IN {ACTIVE_SQL})",
            (cutoff,),
        )
        self._query("DELETE FROM missed_slots WHERE alerted_at < ?", (cutoff,))
        rows = self._query(
            f"DELETE FROM runs WHERE finished_at < ? AND status NOT IN {ACTIVE_SQL} RETURNING id", (cutoff,)
        )
        return len(rows)

    def _select_last_runs(self, jobs: Sequence[str], status: Status | None) -> dict[str, Run]:
        # One statement for every job: per job, one backward step of runs_job_created (with a
        # status: runs_job_status_created) finds the newest run's id; the ids are then read by
        # primary key. The work grows with the number of jobs, not with the history.
        names = ", ".join("(?)" for _ in jobs)
        of_status = " AND r.status = ?" if status is not None else ""
        rows = self._query(
            f"WITH names (job) AS (VALUES {names}) {_SELECT} WHERE id IN (SELECT (SELECT r.id FROM runs AS r"
            f" WHERE r.job = names.job{of_status} ORDER BY r.created_at DESC, r.attempt DESC LIMIT 1)"
            " FROM names)",
            [*jobs, *([str(status)] if status is not None else [])],
        )
        return {run.job: run for run in self._decoded(rows)}

    def _select_created_between(self, start: datetime, end: datetime) -> list[Run]:
        rows = self._query(
            f"{_SELECT} WHERE created_at >= ? AND created_at < ? ORDER BY created_at",
            (self._encode_time(start), self._encode_time(end)),
        )
        return self._decoded(rows)
