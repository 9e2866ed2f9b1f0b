"""The ledger's domain records: a run, its statuses, and what a claim asks and gets."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from service.slots import format_slot


class Status(StrEnum):
    """Where a run is in its life; see DESIGN.md for the transitions."""

    ACCEPTED = "accepted"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    INTERRUPTED = "interrupted"
    SKIPPED = "skipped"
    ABANDONED = "abandoned"


ACTIVE = frozenset({Status.ACCEPTED, Status.RUNNING})
FAILURES = frozenset({Status.FAILED, Status.TIMED_OUT, Status.INTERRUPTED, Status.ABANDONED})


@dataclass(frozen=True)
class Run:
    """One attempt at one (job, slot): a row of the ledger."""

    id: str
    job: str
    slot: datetime
    attempt: int
    status: Status
    trigger: str
    created_at: datetime
    event_id: str | None = None
    instance: str | None = None
    started_at: datetime | None = None
    heartbeat_at: datetime | None = None
    finished_at: datetime | None = None
    lease_until: datetime | None = None
    error: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    #: "" for a job that runs once across the fleet; the instance id for a broadcast job's run.
    target: str = ""

    @property
    def active(self) -> bool:
        """True while the run is accepted or running."""
        return self.status in ACTIVE

    def to_json(self) -> dict[str, Any]:
        """The run as the HTTP API shows it: RFC 3339 UTC times, string id."""
        # Built by hand: dataclasses.asdict deep-copies every value and costs more than the rest
        # of a duplicate answer (BENCHMARKS.md).
        return {
            "id": self.id,
            "job": self.job,
            "slot": format_slot(self.slot),
            "attempt": self.attempt,
            "status": self.status.value,
            "trigger": self.trigger,
            "created_at": format_slot(self.created_at),
            "event_id": self.event_id,
            "instance": self.instance,
            "started_at": _time(self.started_at),
            "heartbeat_at": _time(self.heartbeat_at),
            "finished_at": _time(self.finished_at),
            "error": self.error,
            "params": dict(self.params),
            "target": self.target,
        }


@dataclass(frozen=True)
class ClaimRequest:
    """What a trigger asks the ledger for."""

    job: str
    slot: datetime
    trigger: Literal["schedule", "manual"]
    instance: str
    overlap: Literal["forbid", "allow", "defer"] = "forbid"
    force: bool = False
    #: Set by recovery: open the next attempt only while this attempt is still the slot's latest.
    recovering: int | None = None
    #: A broadcast job claims the slot once per instance: the instance id; "" elsewhere.
    target: str = ""
    #: The trigger token's `jti` and expiry: used up inside the claim's transaction when a run may
    #: start, so an error that undoes the claim also leaves the token usable for a retry.
    token_id: str | None = None
    token_expires: datetime | None = None
    event_id: str | None = None
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Claim:
    """The ledger's answer to a claim: a new run, the slot's existing run, or a skipped one."""

    run: Run
    outcome: Literal["new", "duplicate", "overlap", "deferred", "paused"]


@dataclass(frozen=True)
class Pause:
    """A job paused fleet-wide: its firings are recorded `skipped` until it is resumed."""

    job: str
    paused_at: datetime
    paused_by: str
    reason: str
    until: datetime | None = None

    def active(self, now: datetime) -> bool:
        """True while the pause holds (an `until` in the past has resumed the job by itself)."""
        return self.until is None or self.until > now

    def note(self) -> str:
        """One line for a skipped run's `error` and for Slack."""
        until = f" until {format_slot(self.until)}" if self.until else ""
        return f"paused by {self.paused_by}{until}: {self.reason or 'no reason given'}"

    def to_json(self) -> dict[str, Any]:
        """The pause as the HTTP API shows it."""
        return {
            "job": self.job,
            "paused_at": format_slot(self.paused_at),
            "paused_by": self.paused_by,
            "reason": self.reason,
            "until": _time(self.until),
        }


@dataclass(frozen=True)
class LogPage:
    """A piece of a run's log: the text from the asked offset, and where the next read continues."""

    text: bytes
    next_offset: int


def _time(value: datetime | None) -> str | None:
    return None if value is None else format_slot(value)
