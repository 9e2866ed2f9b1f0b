"""The runner: a claimed run's batch starts in an isolated process; its outcome is recorded."""

from __future__ import annotations

import logging
import os
import signal
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from service.alerts import Alerts
from service.config import Settings
from service.errors import LedgerUnavailable
from service.jobs import JobContext, JobSpec, Registry
from service.ledger import FAILURES, Ledger, Run, Status, open_ledger
from service.runs import localruns
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
            batch = BatchProcess.start(
                lambda error_fd: self._body(spec, started, error_fd), settings.batch_nice
            )
            try:
                outcome = self._watch(batch, spec, started, ledger, lease)
            except _Interrupted:
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
                batch.stop(settings.kill_grace_seconds)
                outcome = Outcome(Status.INTERRUPTED, "the instance shut down before the batch finished")
            finally:
                batch.reap_group()
                batch.close()
            if outcome is not None:
                self._record(ledger, started, outcome)

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

    def _record(self, ledger: Ledger, run: Run, outcome: Outcome) -> None:
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
            self.alerts.run_ended(ended)

    def _body(self, spec: JobSpec, run: Run, error_fd: int) -> int:
        """Runs in the batch process: call the job and report an exception in one line."""
        settings = self.settings
        logger = logging.LoggerAdapter(logging.getLogger(f"batch_trigger.job.{spec.name}"), _fields(run))
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


def _fields(run: Run) -> dict[str, str]:
    return {"run_id": run.id, "job": run.job, "slot": format_slot(run.slot), "attempt": str(run.attempt)}
