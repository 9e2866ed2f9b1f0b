"""Prometheus metrics, summed across an instance's gunicorn workers and keeper.

prometheus_client's multiprocess mode keeps one file per process in PROMETHEUS_MULTIPROC_DIR
(https://prometheus.github.io/client_python/multiprocess/); the directory must be chosen before
any process imports prometheus_client, so `service.gunicorn_conf` prepares it in the arbiter.
Web workers count trigger answers; the keeper, one long-lived process per instance, counts the
runs its instance finished (from the ledger) and the lost runs it found, so short-lived batch
processes never leave metric files behind.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from itertools import islice, pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from service.config import Settings
from service.ledger import ACTIVE, FAILURES, Run, Status

if TYPE_CHECKING:
    from service.jobs import JobSpec

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
FINAL_STATUSES = tuple(status.value for status in Status if status not in ACTIVE)
DURATION_BUCKETS = (0.1, 0.5, 1, 5, 15, 60, 300, 900, 1800, 3600, 7200, 14400)


def prepare_multiprocess_dir(settings: Settings) -> Path:
    """Choose (unless set) and empty this instance's metrics directory; export it to children."""
    configured = os.environ.get(MULTIPROC_ENV)
    path = Path(configured) if configured else _default_dir(settings)
    if not configured and path.exists():
        shutil.rmtree(path)  # counters restart with the instance, as Prometheus expects
    path.mkdir(parents=True, exist_ok=True)
    os.environ[MULTIPROC_ENV] = str(path)
    return path


@dataclass(frozen=True)
class Metrics:
    """The service's metric families."""

    trigger_answers: Any
    http_answers: Any
    runs: Any
    run_duration: Any
    lost_runs: Any
    ledger_errors: Any
    last_success: Any
    last_failure: Any
    success_interval: Any
    _latest: dict[tuple[str, bool], float] = field(default_factory=dict)

    def run_finished(self, run: Run) -> None:
        """Count a finished run of this instance and observe its duration."""
        self.runs.labels(run.job, run.status.value).inc()
        if run.started_at and run.finished_at:
            self.run_duration.labels(run.job).observe((run.finished_at - run.started_at).total_seconds())
        self.run_ended(run)

    def run_ended(self, run: Run) -> None:
        """Move the job's last-success or last-failure time to this run's end (never backwards)."""
        if run.finished_at is None:
            return
        if run.status == Status.SUCCEEDED:
            gauge = self.last_success.labels(run.job)
        elif run.status in FAILURES:
            gauge = self.last_failure.labels(run.job)
        else:
            return
        ended, key = run.finished_at.timestamp(), (run.job, run.status in FAILURES)
        if ended > self._latest.get(key, 0.0):  # a late count of an older run must not move it back
            self._latest[key] = ended
            gauge.set(ended)

    def prime(self, specs: Iterable[JobSpec], zone: ZoneInfo) -> None:
        """Give every job its label sets at zero, so a rule sees 0 instead of no series at all,
        and how long it may go without a success."""
        for spec in specs:
            job = spec.name
            self.success_interval.labels(job).set(success_interval(spec, zone))
            for status in FINAL_STATUSES:
                self.runs.labels(job, status)
            for status in (Status.ABANDONED, Status.INTERRUPTED):
                self.lost_runs.labels(job, status.value)
            self.run_duration.labels(job)
            self.last_success.labels(job)
            self.last_failure.labels(job)


_CREATING = threading.Lock()


def metrics() -> Metrics:
    """This process's metric objects, created on first use (nothing is registered at import)."""
    # Threaded workers (gthread, a threaded host app) ask at once on their first requests: two
    # threads creating the families would register them twice, and the second raises (a 500).
    with _CREATING:
        return _create_metrics()


@cache
def _create_metrics() -> Metrics:
    from prometheus_client import Counter, Gauge, Histogram

    return Metrics(
        trigger_answers=Counter(
            "batch_trigger_trigger_answers", "Answers of the trigger endpoint, by HTTP status", ["code"]
        ),
        http_answers=Counter(
            "batch_trigger_http_answers",
            "Answers of every batch-trigger route, by route pattern and HTTP status",
            ["route", "code"],
        ),
        runs=Counter(
            "batch_trigger_runs", "Runs this instance finished, by job and final status", ["job", "status"]
        ),
        run_duration=Histogram(
            "batch_trigger_run_duration_seconds",
            "Run duration from start to finish",
            ["job"],
            buckets=DURATION_BUCKETS,
        ),
        lost_runs=Counter(
            "batch_trigger_lost_runs",
            "Runs found abandoned or interrupted, by job and status",
            ["job", "status"],
        ),
        ledger_errors=Counter(
            "batch_trigger_ledger_errors", "Ledger calls that failed, by caller", ["where"]
        ),
        # The standard batch-job metrics; "max" across the instance's processes, and a fleet's
        # rules take the max across instances (each seeds them from the ledger when it starts).
        last_success=Gauge(
            "batch_trigger_last_success_timestamp_seconds",
            "When the job's newest successful run ended (Unix time; 0: none known)",
            ["job"],
            multiprocess_mode="max",
        ),
        last_failure=Gauge(
            "batch_trigger_last_failure_timestamp_seconds",
            "When the job's newest failed, timed-out, interrupted or abandoned run ended (Unix time)",
            ["job"],
            multiprocess_mode="max",
        ),
        success_interval=Gauge(
            "batch_trigger_job_success_interval_seconds",
            "Longest gap between two slots of the job's schedule plus missed_after (0: no schedule)",
            ["job"],
            multiprocess_mode="max",
        ),
    )


def success_interval(spec: JobSpec, zone: ZoneInfo, now: datetime | None = None) -> float:
    """How long a scheduled job may go without a success before an alert rule speaks: the longest
    gap between its next 60 slots (a month's 28-31 days, a weekday schedule's weekend) plus grace."""
    if spec.schedule is None:
        return 0.0
    from service.schedules import Schedule, ScheduleError

    try:
        schedule = Schedule.parse(spec.schedule, spec.schedule_timezone or zone)
    except ScheduleError:
        return 0.0
    slots = list(islice(schedule.forward(now or datetime.now(UTC)), 60))
    gaps = [(later - earlier).total_seconds() for earlier, later in pairwise(slots)]
    return max(gaps) + spec.missed_after if gaps else 0.0


def render() -> tuple[bytes, str]:
    """The exposition text: summed over every process of the instance in multiprocess mode."""
    from prometheus_client import (
        CONTENT_TYPE_LATEST,
        REGISTRY,
        CollectorRegistry,
        generate_latest,
        multiprocess,
    )

    metrics()  # the families exist (at zero) even before the first event
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def _default_dir(settings: Settings) -> Path:
    from service.runs import localruns

    return localruns.directory(settings.run_dir, settings.instance_id).parent / "metrics"
