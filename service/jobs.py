"""Jobs: the `@job` decorator, the registry it fills, and the context a job is called with."""

from __future__ import annotations

import importlib
import logging
import pkgutil
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from service.errors import ConfigError, UnknownJob
from service.schedules import Schedule, ScheduleError

if TYPE_CHECKING:
    from service.ledger import Ledger

# Applied with `fullmatch`: a pattern ending in `$` would also accept the name and a newline.
JOB_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
# Token subjects that name no job: `read` reads every job's runs, `drain` drains one instance.
# A job of that name would let its trigger tokens read everything, or drain instances.
RESERVED_NAMES = frozenset({"read", "drain"})
Overlap = Literal["forbid", "allow"]
Scope = Literal["fleet", "instance"]
Notify = Literal["failures", "all"]


class RunCancelled(Exception):
    """Raised at a heartbeat once the instance asked the batch to stop (timeout or drain)."""


@dataclass(frozen=True)
class JobSpec:
    """A registered job and its policy."""

    name: str
    fn: Callable[[JobContext], Any]
    overlap: Overlap = "forbid"
    timeout: float = 3600
    retry_abandoned: bool = True
    max_attempts: int = 3
    schedule: str | None = None
    schedule_timezone: str | None = None
    missed_after: float = 3600
    scope: Scope = "fleet"
    notify: Notify = "failures"

    @property
    def description(self) -> str:
        """The first line of the job function's docstring."""
        return (self.fn.__doc__ or "").strip().splitlines()[0] if self.fn.__doc__ else ""

    def timetable(self, default_zone: ZoneInfo) -> Schedule | None:
        """The job's schedule read in its zone (`schedule_timezone`, else `default_zone`), if it has one."""
        if self.schedule is None:
            return None
        return Schedule.parse(self.schedule, self.schedule_timezone or default_zone)

    def to_json(self) -> dict[str, Any]:
        """The job's policy as the HTTP API shows it."""
        return {
            "name": self.name,
            "description": self.description,
            "overlap": self.overlap,
            "timeout": self.timeout,
            "retry_abandoned": self.retry_abandoned,
            "max_attempts": self.max_attempts,
            "schedule": self.schedule,
            "schedule_timezone": self.schedule_timezone,
            "missed_after": self.missed_after,
            "scope": self.scope,
            "notify": self.notify,
        }


@dataclass
class JobContext:
    """What a job receives: which run this is, its logical date, a bound logger, cancellation."""

    run_id: str
    job: str
    slot: datetime
    logical_date: date
    attempt: int
    params: dict[str, Any]
    logger: logging.LoggerAdapter[logging.Logger]
    timezone: ZoneInfo
    ledger: Ledger
    artefact_dir: Path
    #: Whether this run is still ours: its lease renewed in time and nobody declared it lost.
    still_ours: Callable[[], bool] = field(default=lambda: True, repr=False)
    _cancelled: list[bool] = field(default_factory=lambda: [False], repr=False)

    @property
    def cancelled(self) -> bool:
        """True once the instance asked this batch to stop (timeout, drain)."""
        return self._cancelled[0]

    def cancel(self) -> None:
        """Mark the run as asked to stop (called from the batch's SIGTERM handler)."""
        self._cancelled[0] = True

    def heartbeat(self) -> None:
        """A checkpoint for long batches: raises RunCancelled once the run was asked to stop,
        or is no longer ours (its lease was lost: another instance may take it over).

        The instance's launcher renews the run's lease by itself while the batch process lives;
        a batch calls this between units of work so that a timeout, a drain or a lost lease
        stops it cleanly (a batch that does not is stopped by its fence all the same).
        """
        if self.cancelled:
            raise RunCancelled(f"run {self.run_id} was asked to stop")
        if not self.still_ours():
            raise RunCancelled(f"run {self.run_id} is no longer ours: its lease could not be kept")


class Registry:
    """Jobs by name."""

    def __init__(self) -> None:
        self._jobs: dict[str, JobSpec] = {}

    def add(self, spec: JobSpec) -> None:
        """Register a job; a second, different job under the same name is a configuration error."""
        existing = self._jobs.get(spec.name)
        if existing is not None and existing.fn.__qualname__ != spec.fn.__qualname__:
            raise ConfigError(
                f"two jobs are named {spec.name!r}: {existing.fn.__module__} and {spec.fn.__module__}"
            )
        self._jobs[spec.name] = spec

    def get(self, name: str) -> JobSpec:
        """The job of that name, or UnknownJob."""
        try:
            return self._jobs[name]
        except KeyError:
            raise UnknownJob(f"no job named {name[:64]!r} is registered") from None

    def names(self) -> list[str]:
        """Registered job names, sorted."""
        return sorted(self._jobs)

    def __iter__(self) -> Iterator[JobSpec]:
        return iter(self._jobs[name] for name in self.names())


#: The process-wide registry that `@job` fills when a batch module is imported.
REGISTRY = Registry()


def job(
    name: str,
    *,
    overlap: Overlap = "forbid",
    timeout: float = 3600,
    retry_abandoned: bool = True,
    max_attempts: int = 3,
    schedule: str | None = None,
    schedule_timezone: str | None = None,
    missed_after: float = 3600,
    scope: Scope = "fleet",
    notify: Notify = "failures",
) -> Callable[[Callable[[JobContext], Any]], Callable[[JobContext], Any]]:
    """Register the decorated function `fn(ctx)` as the job `name` with its policy.

    `overlap`: "forbid" records a firing as `skipped` while another slot runs; "allow" runs both.
    `timeout`: seconds before the batch is stopped and recorded `timed_out`.
    `retry_abandoned`: re-run a run lost with its instance (abandoned, interrupted) as the
    next attempt, up to `max_attempts` attempts in all.
    `schedule`: when the job fires, read as EventBridge Scheduler reads it (in `schedule_timezone`,
    by default BATCH_TIMEZONE): a 5-field cron expression, or AWS's `cron(min hour dom month dow
    year)`, `rate(N unit)` or `at(yyyy-mm-ddThh:mm:ss)`; `batch-trigger schedules apply` creates
    it in EventBridge Scheduler, and the watchdog alerts when a slot has no successful run
    `missed_after` seconds after it was due.
    `scope`: "fleet" runs each slot once across the fleet; "instance" (broadcast) runs it once on
    every instance that receives it — the Lambda posts to each healthy target directly.
    `notify`: "failures" (default) alerts on failures and once when a failing job recovers;
    "all" also sends a notice for every successful run.
    """
    if not isinstance(name, str) or not JOB_NAME.fullmatch(name):
        raise ConfigError(f"job name {name!r} must be lower-case letters, digits, '-' or '_'")
    if name in RESERVED_NAMES:
        raise ConfigError(f"job name {name!r} is reserved for tokens that read or drain; choose another")
    if overlap not in ("forbid", "allow"):
        raise ConfigError(f"job {name!r}: overlap must be 'forbid' or 'allow', not {overlap!r}")
    if not timeout > 0:
        raise ConfigError(f"job {name!r}: timeout must be positive seconds")
    if max_attempts < 1:
        raise ConfigError(f"job {name!r}: max_attempts must be at least 1")
    _check_schedule(name, schedule, schedule_timezone)
    if scope not in ("fleet", "instance"):
        raise ConfigError(f"job {name!r}: scope must be 'fleet' or 'instance', not {scope!r}")
    if notify not in ("failures", "all"):
        raise ConfigError(f"job {name!r}: notify must be 'failures' or 'all', not {notify!r}")

    def register(fn: Callable[[JobContext], Any]) -> Callable[[JobContext], Any]:
        REGISTRY.add(
            JobSpec(
                name,
                fn,
                overlap,
                float(timeout),
                retry_abandoned,
                max_attempts,
                schedule,
                schedule_timezone,
                float(missed_after),
                scope,
                notify,
            )
        )
        return fn

    return register


def _check_schedule(name: str, schedule: str | None, zone: str | ZoneInfo | None) -> None:
    """Read the schedule as the service will (EventBridge Scheduler's rules); one line if it cannot."""
    if zone is not None:
        try:
            zone = ZoneInfo(zone) if isinstance(zone, str) else zone
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"job {name!r}: schedule_timezone {zone!r} is not an IANA time zone") from None
    if schedule is not None:
        try:
            Schedule.parse(schedule, zone or "UTC")
        except ScheduleError as exc:
            raise ConfigError(f"job {name!r}: {exc}") from None


def load_jobs(modules: Iterable[str], zone: ZoneInfo | None = None) -> Registry:
    """Import the shipped batches and the named modules; their `@job`s fill the registry.

    With `zone` (BATCH_TIMEZONE), each schedule without a zone of its own is read in it once more:
    an `at(...)` that falls in that zone's daylight-saving gap is refused at start.
    """
    import service.batches

    names = [f"service.batches.{m.name}" for m in pkgutil.iter_modules(service.batches.__path__)]
    for module in [*names, *modules]:
        try:
            importlib.import_module(module)
        except ConfigError:
            raise
        except Exception as exc:
            raise ConfigError(
                f"BATCH_MODULES: cannot import {module!r}: {type(exc).__name__}: {exc}"
            ) from None
    for spec in REGISTRY:
        _check_schedule(spec.name, spec.schedule, spec.schedule_timezone or zone)
    return REGISTRY
