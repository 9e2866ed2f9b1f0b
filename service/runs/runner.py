"""What runs in a batch process, and what becomes of how it ended: its outcome, alert or notice."""

from __future__ import annotations

import logging
import os
import signal
import traceback
from collections.abc import Callable
from pathlib import Path

from service.alerts import Alerts
from service.config import Settings
from service.errors import LedgerUnavailable
from service.jobs import JobContext, JobSpec, Registry
from service.ledger import FAILURES, Ledger, Run, Status, budget, open_ledger
from service.logs import RunLogger, configure_batch_logging
from service.runs.fencing import Fence
from service.runs.handoff import instance_dir
from service.runs.spool import Outcome
from service.slots import format_slot, logical_date

log = logging.getLogger("batch_trigger.runner")


def notice_for(registry: Registry, ledger: Ledger, run: Run) -> Callable[[Alerts, str], object] | None:
    """What the channel hears of an ended run (None: nothing): an alert for a failure; after
    failures, one "recovered" notice; for jobs with notify="all", a success notice."""
    if run.status in FAILURES:
        return lambda alerts, excerpt: alerts.run_ended(run, excerpt)
    if run.status != Status.SUCCEEDED:
        return None
    try:
        notify = registry.get(run.job).notify
        recovered = _previous_failed(ledger, run)
    except (LedgerUnavailable, LookupError) as exc:
        log.warning("cannot tell whether the job recovered: %s", exc, extra=_fields(run))
        return None
    if recovered is not None:
        return lambda alerts, excerpt: alerts.recovered(run, recovered)
    if notify == "all":
        return lambda alerts, excerpt: alerts.succeeded(run)
    return None


def body(settings: Settings, spec: JobSpec, run: Run, error_fd: int, fence: Fence) -> int:
    """Runs in the batch process: arm the fence, call the job, report an exception in one line."""
    fence.arm()
    configure_batch_logging(settings.log_level)
    logger = RunLogger(logging.getLogger(f"batch_trigger.job.{spec.name}"), _fields(run))
    ctx = JobContext(
        run_id=run.id,
        job=run.job,
        slot=run.slot,
        logical_date=logical_date(run.slot, settings.timezone),
        attempt=run.attempt,
        params=dict(run.params),
        logger=logger,
        timezone=settings.timezone,
        ledger=_batch_ledger(settings),
        artefact_dir=Path(settings.artefact_dir),
        still_ours=fence.still_ours,
    )
    signal.signal(signal.SIGTERM, lambda *_: ctx.cancel())
    try:
        spec.fn(ctx)
    except SystemExit as exc:
        if exc.code in (None, 0):
            return 0
        os.write(error_fd, f"SystemExit: {exc.code}".encode()[:2000])
        return 1
    except BaseException as exc:
        # The whole traceback goes to the run's log; the run's `error` keeps the one-line summary.
        traceback.print_exc()
        os.write(error_fd, f"{type(exc).__name__}: {exc}".encode()[:2000])
        return 1
    return 0


def exit_outcome(code: int, error: str) -> Outcome:
    """The outcome of a batch process that exited by itself with `code` (negative: a signal)."""
    if code == 0:
        return Outcome(Status.SUCCEEDED)
    if error:
        return Outcome(Status.FAILED, error)
    if code < 0:
        return Outcome(Status.FAILED, f"batch process killed by {signal.Signals(-code).name}")
    return Outcome(Status.FAILED, f"batch process exited with status {code}")


def _previous_failed(ledger: Ledger, run: Run) -> Run | None:
    """The job's previous finished run (same target), when it ended in a failure."""
    for earlier in ledger.runs(job=run.job, limit=20):
        if earlier.id == run.id or earlier.target != run.target or earlier.finished_at is None:
            continue
        if earlier.status == Status.SKIPPED or (run.finished_at and earlier.finished_at > run.finished_at):
            continue
        return earlier if earlier.status in FAILURES else None
    return None


def _fields(run: Run) -> dict[str, str]:
    """A run's log fields."""
    return {"run_id": run.id, "job": run.job, "slot": format_slot(run.slot), "attempt": str(run.attempt)}


def _batch_ledger(settings: Settings) -> Ledger:
    """`ctx.ledger`: it takes one of the instance's connection permits only for each statement."""
    ledger = open_ledger(settings.ledger_url)
    here = instance_dir(settings.run_dir, settings.instance_id)
    ledger.share_connections(budget.for_instance(here, settings.connection_permits), brief=True)
    return ledger
