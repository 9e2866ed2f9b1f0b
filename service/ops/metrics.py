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
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from service.config import Settings
from service.ledger import Run

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
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

    def run_finished(self, run: Run) -> None:
        """Count a finished run of this instance and observe its duration."""
        self.runs.labels(run.job, run.status.value).inc()
        if run.started_at and run.finished_at:
            self.run_duration.labels(run.job).observe((run.finished_at - run.started_at).total_seconds())


@cache
def metrics() -> Metrics:
    """This process's metric objects, created on first use (nothing is registered at import)."""
    from prometheus_client import Counter, Histogram

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
    )


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
