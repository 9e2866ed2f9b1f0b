"""The run ledger's rules; a backend supplies a handful of hooks (its connection, schema and lock)."""

from __future__ import annotations

import logging
import random
import uuid
from abc import abstractmethod
from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timedelta

from service.errors import TokenReplayed
from service.ledger.records import ACTIVE, Claim, ClaimRequest, LogPage, Pause, Run, Status
from service.ledger.sql_housekeeping import HousekeepingStatements
from service.slots import format_slot

log = logging.getLogger("batch_trigger.ledger")


class Ledger(HousekeepingStatements):
    """The run ledger's rules (claims, leases, outcomes, tokens, housekeeping) over its SQL statements.

    A backend supplies a handful of hooks: `ensure_schema` and `_claim_transaction` here, and
    `_query`, `_encode_time` and `_decode_time` for the statements (service.ledger.sql and
    sql_housekeeping); one whose
    sessions die with their process may also prove launchers alive (`hold_launcher_lock`, ...).
    """

    #: The share of token checks that also prune expired token records.
    prune_probability = 0.01

    def claim(self, request: ClaimRequest, now: datetime) -> Claim:
        """Claim (job, slot) atomically: the first caller gets a new run, later ones the same run."""
        if request.token_id is not None and random.random() < self.prune_probability:  # noqa: S311
            self._prune_tokens(now)
        if not request.force and request.recovering is None:
            # The common duplicate (a redelivery of a slot that has its run) needs no lock: a run,
            # once there, stays the slot's answer, and nothing new starts that a failure could undo.
            # The token is still used up, so a replayed token is refused here as well.
            latest = self._latest_attempt(request.job, request.slot, request.target)
            if latest is not None:
                if request.token_id is not None:
                    self._use_token(request.token_id, request.token_expires or now)
                return Claim(latest, "duplicate")
        with self._claim_transaction(request.job):
            if request.token_id is not None:
                self._use_token(request.token_id, request.token_expires or now)
            latest = self._latest_attempt(request.job, request.slot, request.target)
            if latest is not None and (latest.active or not request.force):
                return Claim(latest, "duplicate")
            if request.recovering is not None and (
                latest is None
                or latest.attempt != request.recovering
                # A late outcome may have turned the lost run into what it was meanwhile.
                or latest.status not in (Status.ABANDONED, Status.INTERRUPTED)
            ):
                return Claim(latest or _missing(request), "duplicate")
            # A paused job's firing is answered and kept in history, but starts nothing; the
            # recovery of a run that began before the pause goes on.
            pause = self.pause_of(request.job, now) if request.recovering is None else None
            blocker = None
            if pause is None and request.overlap != "allow":
                blocker = self._active_run_of_other_slot(request.job, request.slot, request.target)
            if blocker is not None and request.overlap == "defer":
                return Claim(blocker, "deferred")
            skipped = None
            if pause is not None:
                skipped = pause.note()
            elif blocker is not None:
                skipped = f"overlap: slot {format_slot(blocker.slot)} is {blocker.status}"
            run = Run(
                id=_run_id(now),
                job=request.job,
                slot=request.slot,
                attempt=latest.attempt + 1 if latest else 1,
                status=Status.SKIPPED if skipped else Status.ACCEPTED,
                trigger=request.trigger,
                created_at=now,
                event_id=request.event_id,
                instance=request.instance,
                finished_at=now if skipped else None,
                error=skipped,
                params=request.params,
                target=request.target,
            )
            # The uniqueness constraint on (job, slot, attempt) is the final word, even if a
            # backend's transaction were weaker than we believe.
            if not self._insert(run):
                existing = self._latest_attempt(request.job, request.slot, request.target)
                assert existing is not None
                return Claim(existing, "duplicate")
        return Claim(run, "paused" if pause else "overlap" if blocker else "new")

    def consume_token(self, jti: str, expires_at: datetime, now: datetime) -> None:
        """Record a token id as used; a second use raises TokenReplayed."""
        if random.random() < self.prune_probability:  # noqa: S311 - load spreading, not security
            self._prune_tokens(now)
        self._use_token(jti, expires_at)

    def _use_token(self, jti: str, expires_at: datetime) -> None:
        if not self._insert_token(jti, expires_at):
            raise TokenReplayed("this token was already used; mint a fresh one")

    def start(self, run_id: str, instance: str, now: datetime | None, lease: timedelta) -> Run | None:
        """Move an accepted run to running on this instance with a first lease (`now` None: see renew)."""
        at = self._clock(now)
        return self._transition(
            run_id,
            {Status.ACCEPTED},
            status=Status.RUNNING,
            instance=instance,
            started_at=at,
            heartbeat_at=at,
            lease_until=at + lease,
        )

    def heartbeat(self, run_id: str, now: datetime | None, lease: timedelta) -> bool:
        """Renew a running run's lease; False when the run is no longer running (stop it)."""
        return run_id in self.renew([run_id], now, lease)

    def renew(self, run_ids: Sequence[str], now: datetime | None, lease: timedelta) -> set[str]:
        """Renew the leases of many running runs in one statement; the ids still running (ours).

        `now` None: the store's clock (see service.ledger.clock), as every lease should be renewed.
        """
        at = self._clock(now)
        return self._renew_leases(run_ids, at, at + lease) if run_ids else set()

    def active_on(self, instance: str) -> list[Run]:
        """The accepted and running runs of `instance` (what its launcher adopts or left behind)."""
        return self._select_active_on(instance)

    def reconcile(self, run_id: str, status: Status, now: datetime, error: str | None = None) -> Run | None:
        """Record the late outcome of a run declared `abandoned` meanwhile; None if it is not.

        Under the job's claim lock, as a recovery claim is: the recovery either sees the run
        ended as it did (and starts nothing) or had already claimed the next attempt.
        """
        run = self._select_one(run_id)
        if run is None or run.status != Status.ABANDONED:
            return None
        with self._claim_transaction(run.job):
            note = f"{error} (recorded late)" if error else "recorded late: the outcome came after the lease"
            return self._transition(
                run_id, {Status.ABANDONED}, status=status, finished_at=now, error=_short(note)
            )

    def finish(self, run_id: str, status: Status, now: datetime, error: str | None = None) -> Run | None:
        """Record an active run's outcome; None when it had already ended (e.g. abandoned)."""
        return self._transition(run_id, set(ACTIVE), status=status, finished_at=now, error=_short(error))

    def expire_leases(
        self, now: datetime | None, accept_timeout: timedelta, margin: timedelta = timedelta(0)
    ) -> list[Run]:
        """Mark runs whose lease ended more than `margin` ago `abandoned` (and runs accepted longer
        than `accept_timeout` ago); return them. The margin is the fencing's: see service.runs.fencing.
        `now` None: judged on the store's clock, the one the leases were written with."""
        at = self._clock(now)
        return self._abandon_expired(at, at - accept_timeout, at - margin)

    def recoverable(self, since: datetime) -> list[Run]:
        """Abandoned or interrupted runs, ended since `since`, that are still their slot's latest attempt."""
        return self._select_recoverable(since)

    def finished_on(self, instance: str, after: datetime) -> list[Run]:
        """Runs recorded by `instance` that finished after `after`, oldest first (for metrics)."""
        return self._select_finished_on(instance, after)

    def prune(self, before: datetime) -> int:
        """Delete finished runs (and watchdog records) older than `before`; how many runs went."""
        return self._delete_finished_before(before)

    def append_log(self, run_id: str, offset: int, chunk: bytes) -> None:
        """Store a chunk of a run's log (whole lines) at its byte offset in the run's output."""
        self._insert_log_chunk(run_id, offset, chunk)

    def drop_log(self, run_id: str, start: int, end: int) -> None:
        """Delete the run's log chunks that begin in [start, end) (the tail rolled past them)."""
        self._delete_log_chunks(run_id, start, end)

    def read_log(self, run_id: str, offset: int = 0) -> LogPage:
        """The run's log from `offset`; a gap left by the bound reads as one "omitted" line."""
        text, cursor = bytearray(), offset
        for position, chunk in self._select_log_chunks(run_id, offset):
            if position > cursor:
                text += f"… {position - cursor} bytes omitted …\n".encode()
            text += chunk[max(0, cursor - position) :]
            cursor = position + len(chunk)
        return LogPage(bytes(text), cursor)

    def watch_from(self, jobs: Sequence[str], now: datetime) -> dict[str, datetime]:
        """Per job, the time after which the watchdog has yet to judge its slots, in one read.

        That is where the last check of the job ended, or when the watchdog began watching it
        (`now`, on the first call): slots due before a new deployment are not its to judge.
        """
        return self._select_watch_from(jobs, now) if jobs else {}

    def mark_checked(self, job: str, until: datetime) -> None:
        """Record that the watchdog judged `job`'s slots up to `until` (never moves back)."""
        self._update_checked_until(job, until)

    def mark_missed(self, job: str, slot: datetime, now: datetime) -> bool:
        """Record that a missed slot was reported; True only for the first caller, fleet-wide."""
        return self._insert_missed(job, slot, now)

    def succeeded_slots(self, job: str, start: datetime, end: datetime) -> set[datetime]:
        """Slots in [start, end] of `job` that have a succeeded run."""
        return self._select_succeeded_slots(job, start, end)

    def pause(self, job: str, by: str, reason: str, until: datetime | None, now: datetime) -> Pause:
        """Pause `job` fleet-wide (again: the newer who, why and until replace the older)."""
        pause = Pause(job, now, by, reason, until)
        self._upsert_pause(pause)
        return pause

    def resume(self, job: str, now: datetime) -> Pause | None:
        """Lift the job's pause; the pause that held, or None when the job was not paused."""
        lifted = self._delete_pause(job)
        return lifted if lifted is not None and lifted.active(now) else None

    def pause_of(self, job: str, now: datetime) -> Pause | None:
        """The pause that holds for `job` now, if any."""
        found = self._select_pauses(job)
        return found[0] if found and found[0].active(now) else None

    def pauses(self, now: datetime) -> dict[str, Pause]:
        """Every pause that holds now, by job."""
        return {p.job: p for p in self._select_pauses(None) if p.active(now)}

    def expire_pauses(self, now: datetime) -> list[Pause]:
        """Remove the pauses whose `until` has come; each is returned to exactly one caller."""
        return self._delete_expired_pauses(now)

    def get(self, run_id: str) -> Run | None:
        """One run by id."""
        return self._select_one(run_id)

    def runs(
        self,
        *,
        job: str | None = None,
        status: Status | None = None,
        slot: datetime | None = None,
        before: datetime | None = None,
        limit: int = 50,
    ) -> list[Run]:
        """Runs, newest first, optionally filtered; `before` pages: runs created before that time."""
        return self._select_many(
            job=job, status=status, slot=slot, before=before, limit=max(1, min(limit, 1000))
        )

    def runs_between(self, start: datetime, end: datetime) -> list[Run]:
        """Runs created in [start, end), oldest first (for the history jobs)."""
        return self._select_created_between(start, end)

    def last_runs(self, jobs: Sequence[str], status: Status | None = None) -> dict[str, Run]:
        """The newest run (of `status`, if given) of each named job that has one."""
        return self._select_last_runs(jobs, status) if jobs else {}

    # Launcher liveness (service.runs.launcher): a backend whose sessions die with their process
    # (PostgreSQL) lets a launcher's session prove its instance alive. Without one (SQLite: one
    # host, whose keeper sees the launcher's restart), every run falls back to its lease.
    def hold_launcher_lock(self, instance: str) -> bool:
        """Take (or keep) the instance's launcher lock on this process's session; False if held elsewhere."""
        return True

    def launcher_session_fd(self) -> int | None:
        """The socket of the session holding the launcher lock (readable when the server ends it)."""
        return None

    def launcher_locks(self, grace: timedelta) -> dict[str, bool | None]:
        """Per instance with running runs: its launcher lock held (True), free (False), or free but
        not to be judged (None: the database restarted less than `grace` ago). Empty when unsupported."""
        return {}

    def abandon_without_launcher(
        self, instances: Sequence[str], now: datetime, grace: timedelta
    ) -> list[Run]:
        """Mark the running runs of these instances `abandoned` if their launcher lock is still free."""
        return []

    @abstractmethod
    def ensure_schema(self) -> None:
        """Create or migrate the schema; safe to call from many processes at once."""

    @abstractmethod
    def _claim_transaction(self, job: str) -> AbstractContextManager[None]:
        """A transaction in which no other claim of `job` interleaves."""


def _run_id(now: datetime) -> str:
    """32 hex digits as ever: the creation time in ms, then 80 random bits. A day's runs sit side
    by side in the primary key, so inserts append to it and a prune deletes neighbours."""
    return f"{max(0, int(now.timestamp() * 1000)):012x}{uuid.uuid4().hex[:20]}"


def _missing(request: ClaimRequest) -> Run:
    raise LookupError(f"no run of {request.job} at {format_slot(request.slot)} to recover")


def _short(error: str | None, limit: int = 500) -> str | None:
    if error is None or len(error) <= limit:
        return error
    return error[: limit - 1] + "…"
