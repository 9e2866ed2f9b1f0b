"""The runner: a claimed run's batch starts in an isolated process; its outcome is recorded."""

from __future__ import annotations

import logging
import os
import signal
import time
import traceback
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from service.alerts import Alerts
from service.config import Settings
from service.errors import LedgerUnavailable
from service.jobs import JobContext, JobSpec, Registry
from service.ledger import FAILURES, Ledger, Run, Status, open_ledger
from service.logs import RunLogger, configure_batch_logging
from service.runs import localruns
from service.runs.capture import OutputCapture, Pipes
from service.runs.isolation import BatchProcess, detach, leave_web_worker
from service.slots import format_slot, logical_date, utcnow

log = logging.getLogger("batch_trigger.runner")


@dataclass(frozen=True)
class Outcome:
    """How a batch process ended."""

    status: Status
    error: str | None = None


class Runner:
    """Starts batches off the request path and supervises them to a recorded outcome."""

    def __init__(self, settings: Settings, registry: Registry, alerts: Alerts) -> None:
        self.settings = settings
        self.registry = registry
        self.alerts = alerts

    def launch(self, run: Run, ledger: Ledger) -> None:
        """Start the run's supervisor process and return at once (a few milliseconds)."""
        try:
            detach(lambda: self._supervise(run))
        except OSError as exc:
            ended = ledger.finish(run.id, Status.FAILED, utcnow(), f"could not start the batch: {exc}")
            if ended is not None:
                self.alerts.run_ended_soon(ended)

    def _supervise(self, run: Run) -> None:
        leave_web_worker()
        settings = self.settings
        ledger = open_ledger(settings.ledger_url)
        spec = self.registry.get(run.job)
        lease = timedelta(seconds=settings.lease_seconds)
        started = ledger.start(run.id, settings.instance_id, utcnow(), lease)
        if started is None:
            return  # the run ended before it began (a sweep abandoned it): not ours to run
        log.info("batch started", extra=_fields(started))
        with localruns.registered(settings.run_dir, settings.instance_id, run.id):
            # From here a SIGTERM (the drain, past its grace) interrupts the watch below.
            signal.signal(signal.SIGTERM, _interrupt)
            pipes = Pipes.open()
            batch = BatchProcess.start(
                lambda error_fd: self._body(spec, started, error_fd), settings.batch_nice, pipes
            )
            # The run's log: what the batch (and any process it starts) writes to fds 1 and 2.
            output = OutputCapture(run.id, ledger, pipes.keep_read_ends()).start()
            try:
                outcome = self._watch(batch, spec, started, ledger, lease)
            except _Interrupted:
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
                batch.stop(settings.kill_grace_seconds)
                outcome = Outcome(Status.INTERRUPTED, "the instance shut down before the batch finished")
            finally:
                batch.reap_group()
                output.finish()  # before the outcome: a reader that sees the run end has its whole log
                batch.close()
            if outcome is not None:
                self._record(ledger, started, outcome, output.excerpt())

    def _watch(
        self, batch: BatchProcess, spec: JobSpec, run: Run, ledger: Ledger, lease: timedelta
    ) -> Outcome | None:
        deadline = time.monotonic() + spec.timeout
        beat_every = self.settings.heartbeat_seconds
        next_beat = time.monotonic() + beat_every
        while True:
            code = batch.wait(min(deadline, next_beat) - time.monotonic())
            if code is not None:
                return _exit_outcome(code, batch.error_text())
            now = time.monotonic()
            if now >= deadline:
                batch.stop(self.settings.kill_grace_seconds)
                return Outcome(Status.TIMED_OUT, f"exceeded its timeout of {spec.timeout:g} s")
            if now >= next_beat:
                next_beat = now + beat_every
                try:
                    still_ours = ledger.heartbeat(run.id, utcnow(), lease)
                except LedgerUnavailable as exc:
                    log.warning("heartbeat failed; will retry: %s", exc, extra=_fields(run))
                    continue
                if not still_ours:
                    # Another instance declared this run lost: stop, so the body never runs twice at once.
                    log.warning("run no longer ours; stopping the batch", extra=_fields(run))
                    batch.stop(self.settings.kill_grace_seconds)
                    return None

    def _record(self, ledger: Ledger, run: Run, outcome: Outcome, excerpt: str = "") -> None:
        for delay in (0.5, 1, 2, 4, 8):
            try:
                ended = ledger.finish(run.id, outcome.status, utcnow(), outcome.error)
                break
            except LedgerUnavailable as exc:
                log.warning("cannot record the outcome yet: %s", exc, extra=_fields(run))
                time.sleep(delay)
        else:
            log.error("outcome %s not recorded; the lease will expire", outcome.status, extra=_fields(run))
            return
        if ended is None:
            return
        log.info("batch ended %s", ended.status, extra=_fields(ended))
        if ended.status in FAILURES:
            self.alerts.run_ended(ended, excerpt)
        elif ended.status == Status.SUCCEEDED:
            self._notify_success(ledger, ended)

    def _notify_success(self, ledger: Ledger, run: Run) -> None:
        """One "recovered" notice after failures; a success notice for jobs with notify="all"."""
        try:
            notify = self.registry.get(run.job).notify
            recovered = _previous_failed(ledger, run)
        except (LedgerUnavailable, LookupError) as exc:
            log.warning("cannot tell whether the job recovered: %s", exc, extra=_fields(run))
            return
        if recovered is not None:
            self.alerts.recovered(run, recovered)
        elif notify == "all":
            self.alerts.succeeded(run)

    def _body(self, spec: JobSpec, run: Run, error_fd: int) -> int:
        """Runs in the batch process: call the job and report an exception in one line."""
        settings = self.settings
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
            ledger=open_ledger(settings.ledger_url),
            artefact_dir=Path(settings.artefact_dir),
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


class _Interrupted(Exception):
    """The supervisor was asked to stop (SIGTERM from the instance's drain)."""


def _interrupt(signum: int, frame: object) -> None:
    raise _Interrupted


def _exit_outcome(code: int, error: str) -> Outcome:
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
    return {"run_id": run.id, "job": run.job, "slot": format_slot(run.slot), "attempt": str(run.attempt)}
