"""The ledger's housekeeping statements: run logs, the watchdog's records and job pauses."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from service.ledger.records import Pause
from service.ledger.sql import SqlStatements

_PAUSE = "job, paused_at, paused_by, reason, until"


class HousekeepingStatements(SqlStatements):
    """Statements for what sits beside the runs: their logs, missed slots and pauses."""

    def _insert_log_chunk(self, run_id: str, offset: int, chunk: bytes) -> None:
        self._query(
            "INSERT INTO run_logs (run_id, pos, chunk) VALUES (?, ?, ?) ON CONFLICT (run_id, pos) DO NOTHING",
            (run_id, offset, chunk),
        )

    def _delete_log_chunks(self, run_id: str, start: int, end: int) -> None:
        self._query("DELETE FROM run_logs WHERE run_id = ? AND pos >= ? AND pos < ?", (run_id, start, end))

    def _select_log_chunks(self, run_id: str, offset: int) -> list[tuple[int, bytes]]:
        rows = self._query(
            "SELECT pos, chunk FROM run_logs WHERE run_id = ? AND pos + length(chunk) > ? ORDER BY pos",
            (run_id, offset),
        )
        return [(int(pos), bytes(chunk)) for pos, chunk in rows]

    def _select_watch_from(self, jobs: Sequence[str], now: datetime) -> dict[str, datetime]:
        marks = ", ".join("?" for _ in jobs)
        select = f"SELECT job, since, checked_until FROM watched_jobs WHERE job IN ({marks})"
        rows = self._query(select, list(jobs))
        if len(rows) < len(set(jobs)):
            # The first sight of a job: the watchdog judges only slots due from now on.
            seen = {row[0] for row in rows}
            for job in dict.fromkeys(jobs):
                if job not in seen:
                    self._query(
                        "INSERT INTO watched_jobs (job, since) VALUES (?, ?) ON CONFLICT (job) DO NOTHING",
                        (job, self._encode_time(now)),
                    )
            rows = self._query(select, list(jobs))
        # Slots up to the last check are judged; before the first one, those before `since` are not ours.
        return {job: self._decode_time(checked or since) for job, since, checked in rows}

    def _update_checked_until(self, job: str, until: datetime) -> None:
        encoded = self._encode_time(until)
        self._query(
            "UPDATE watched_jobs SET checked_until = ?"
            " WHERE job = ? AND (checked_until IS NULL OR checked_until < ?)",
            (encoded, job, encoded),
        )

    def _insert_missed(self, job: str, slot: datetime, now: datetime) -> bool:
        rows = self._query(
            "INSERT INTO missed_slots (job, slot, alerted_at) VALUES (?, ?, ?)"
            " ON CONFLICT (job, slot) DO NOTHING RETURNING job",
            (job, self._encode_time(slot), self._encode_time(now)),
        )
        return bool(rows)

    def _select_succeeded_slots(self, job: str, start: datetime, end: datetime) -> set[datetime]:
        rows = self._query(
            "SELECT DISTINCT slot FROM runs WHERE job = ? AND status = 'succeeded'"
            " AND slot >= ? AND slot <= ?",
            (job, self._encode_time(start), self._encode_time(end)),
        )
        return {self._decode_time(row[0]) for row in rows}

    def _upsert_pause(self, pause: Pause) -> None:
        until = None if pause.until is None else self._encode_time(pause.until)
        self._query(
            f"INSERT INTO job_pauses ({_PAUSE}) VALUES (?, ?, ?, ?, ?) ON CONFLICT (job) DO UPDATE SET"
            " paused_at = excluded.paused_at, paused_by = excluded.paused_by,"
            " reason = excluded.reason, until = excluded.until",
            (pause.job, self._encode_time(pause.paused_at), pause.paused_by, pause.reason, until),
        )

    def _delete_pause(self, job: str) -> Pause | None:
        rows = self._query(f"DELETE FROM job_pauses WHERE job = ? RETURNING {_PAUSE}", (job,))
        return self._pause(rows[0]) if rows else None

    def _select_pauses(self, job: str | None) -> list[Pause]:
        if job is None:
            rows = self._query(f"SELECT {_PAUSE} FROM job_pauses ORDER BY job")
        else:
            rows = self._query(f"SELECT {_PAUSE} FROM job_pauses WHERE job = ?", (job,))
        return [self._pause(row) for row in rows]

    def _delete_expired_pauses(self, now: datetime) -> list[Pause]:
        rows = self._query(
            f"DELETE FROM job_pauses WHERE until IS NOT NULL AND until <= ? RETURNING {_PAUSE}",
            (self._encode_time(now),),
        )
        return [self._pause(row) for row in rows]

    def _pause(self, row: Sequence[Any]) -> Pause:
        job, paused_at, paused_by, reason, until = row
        until = None if until is None else self._decode_time(until)
        return Pause(job, self._decode_time(paused_at), paused_by, reason, until)
