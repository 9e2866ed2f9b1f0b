"""The keeper: each instance's housekeeping loop — expired leases become `abandoned`, and runs
lost with their instance are run again, as the next attempt, on a live one.

Every instance runs a keeper (gunicorn's arbiter forks it); their sweeps race safely because
each change is one atomic statement or claim in the shared ledger: one keeper marks a run
abandoned, and one claims its next attempt.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from service.alerts import SEND_TIMEOUT_SECONDS, Alerts
from service.config import Settings
from service.errors import CorruptRecord, ServiceError
from service.jobs import Registry, load_jobs
from service.ledger import FAILURES, Ledger, Run, Status, budget, open_ledger
from service.ops.metrics import metrics
from service.ops.watchdog import Missed, Watchdog
from service.runs import fencing
from service.runs.capture import stored_excerpt
from service.runs.claim_and_launch import ClaimAndLaunch
from service.runs.handoff import instance_dir
from service.slots import utcnow

log = logging.getLogger("batch_trigger.keeper")
#: How far back the keeper looks for lost runs to recover.
RECOVERY_WINDOW = timedelta(days=2)
PRUNE_EVERY = timedelta(hours=1)
#: How often the runs this instance finished are counted into /metrics (well inside a scrape interval).
COUNT_EVERY = 5.0
#: PostgreSQL: an instance whose launcher lock was seen free this long (in two looks, COUNT_EVERY
#: apart) is gone; its runs are abandoned and run again at once, without waiting for their lease.
#: Longer than service.runs.liveness.LOSS_LIMIT: a live launcher that lost its session has
#: stopped its batches by then.
LAUNCHER_GONE_AFTER = 4.0
#: ... but never within this long of the database's (re)start: every lock is free then, and the
#: launchers take theirs back first (they retry every second).
RESTART_GRACE = timedelta(seconds=10)


@dataclass
class Sweep:
    """What one sweep did."""

    abandoned: list[Run] = field(default_factory=list)
    recovered: list[Run] = field(default_factory=list)
    missed: list[Missed] = field(default_factory=list)
    pruned: int = 0


class Keeper:
    """Sweeps the ledger for expired leases and recovers lost runs on this instance."""

    def __init__(self, settings: Settings, registry: Registry, ledger: Ledger, alerts: Alerts) -> None:
        self.settings = settings
        self.registry = registry
        self.ledger = ledger
        self.alerts = alerts
        self.launching = ClaimAndLaunch(ledger, registry, settings.instance_id, settings.run_dir)
        self.watchdog = Watchdog(registry, ledger, alerts, settings.timezone)
        self._next_prune: datetime | None = None
        self._held_by: set[str] = set()  # instances seen holding their launcher lock
        self._free_since: dict[str, float] = {}
        self._counted_until = utcnow()
        self._reported_rows: set[str] = set()

    def sweep(self, now: datetime) -> Sweep:
        """Mark expired leases abandoned, start the next attempt of lost runs, then queue the alerts."""
        result = Sweep()
        self._count_finished_runs()
        lease = timedelta(seconds=self.settings.lease_seconds)
        # Only once the fencing margin has passed too: a batch whose lease ran out has stopped by then.
        margin = timedelta(seconds=fencing.margin(self.settings.lease_seconds))
        # Judged on the ledger's clock, the one the leases were written with (service.ledger.clock):
        # this host's clock, however far off, never decides that a run elsewhere is lost.
        result.abandoned = self.ledger.expire_leases(None, accept_timeout=lease, margin=margin)
        for run in result.abandoned:
            log.warning("run abandoned: %s", run.error, extra={"run_id": run.id, "job": run.job})
            metrics().lost_runs.labels(run.job, run.status.value).inc()
            metrics().run_ended(run)
        for lost in self.ledger.recoverable(since=now - RECOVERY_WINDOW):
            try:
                recovered = self._recover(lost, now)
            except CorruptRecord:  # its slot's latest attempt cannot be read back: reported below
                continue
            if recovered is not None:
                result.recovered.append(recovered)
        # Recovery first, alerts after, and only queued (the keeper's Alerts are): a Slack that
        # accepts and never answers delays neither a next attempt nor the next sweep.
        for run in result.abandoned:
            # What the lost instance had sent of the run's output says how far it got.
            self.alerts.run_ended(run, stored_excerpt(self.ledger, run.id))
        for pause in self.ledger.expire_pauses(now):
            # `--until` came: the job fires again already; one keeper of the fleet says so once.
            log.info("job %s resumed: its pause ended", pause.job, extra={"job": pause.job})
            self.alerts.resumed(pause.job, "the end of its pause (--until)", pause)
        result.missed = self.watchdog.check(now)
        result.pruned = self._prune(now)
        self._report_undecodable()
        return result

    def check_launchers(self, now: datetime) -> list[Run]:
        """PostgreSQL: abandon, alert and run again the runs of instances whose launcher is gone.

        Only instances this keeper saw holding their lock are judged (an instance of an older
        release, or with LAUNCHER_LOCK=off, never holds one), and only after the lock stayed free
        for LAUNCHER_GONE_AFTER; a vanished host whose session the server still keeps open
        is left to its lease.
        """
        if not self.settings.launcher_lock:
            return []
        locks = self.ledger.launcher_locks(RESTART_GRACE)
        moment = time.monotonic()
        self._held_by |= {instance for instance, held in locks.items() if held}
        for instance in list(self._free_since):
            if locks.get(instance) is not False:
                del self._free_since[instance]
        gone = []
        for instance, held in locks.items():
            if held is False and instance in self._held_by and instance != self.settings.instance_id:
                since = self._free_since.setdefault(instance, moment)
                if moment - since >= LAUNCHER_GONE_AFTER:
                    gone.append(instance)
        abandoned = self.ledger.abandon_without_launcher(gone, now, RESTART_GRACE)
        for run in abandoned:
            log.warning("run abandoned: %s", run.error, extra={"run_id": run.id, "job": run.job})
            metrics().lost_runs.labels(run.job, run.status.value).inc()
            metrics().run_ended(run)
        for run in abandoned:
            self._recover(run, now)
        for run in abandoned:
            self.alerts.run_ended(run)
        return abandoned

    def _report_undecodable(self) -> None:
        """Alert once per run that cannot be read back (every sweep skips it); later sweeps stay quiet."""
        for run_id, why in self.ledger.undecodable_rows().items():
            if run_id in self._reported_rows:
                continue
            self._reported_rows.add(run_id)
            text = (
                f":warning: batch-trigger: run `{run_id[:64]}` cannot be read back from the ledger"
                f" ({why[:300]}); sweeps and listings skip it. See docs/runbook.md, 'A run the ledger"
                " cannot read'."
            )
            self.alerts.send(text, [{"type": "section", "text": {"type": "mrkdwn", "text": text}}])

    def _prune(self, now: datetime) -> int:
        """Delete finished runs past RETENTION_DAYS, at most once an hour per instance."""
        if not self.settings.retention_days or (self._next_prune and now < self._next_prune):
            return 0
        self._next_prune = now + PRUNE_EVERY
        pruned = self.ledger.prune(before=now - timedelta(days=self.settings.retention_days))
        if pruned:
            log.info("pruned %d finished runs older than %d days", pruned, self.settings.retention_days)
        return pruned

    def _count_finished_runs(self) -> None:
        """Feed the metrics with the runs this instance finished since the last sweep."""
        for run in self.ledger.finished_on(self.settings.instance_id, self._counted_until):
            metrics().run_finished(run)
            if run.finished_at is not None:
                self._counted_until = max(self._counted_until, run.finished_at)

    def seed_metrics(self) -> None:
        """Every job's series at zero, then its last success and failure as the ledger knows them
        fleet-wide, so a restarted instance does not report a job as never having succeeded."""
        counters = metrics()
        counters.prime(self.registry, self.settings.timezone)
        for job in self.registry.names():
            for status in (Status.SUCCEEDED, *FAILURES):
                for run in self.ledger.runs(job=job, status=status, limit=1):
                    counters.run_ended(run)

    def _recover(self, lost: Run, now: datetime) -> Run | None:
        recovered = self.launching.recover(lost, now)
        if recovered is not None and lost.status == "interrupted":
            metrics().lost_runs.labels(lost.job, lost.status.value).inc()
        return recovered


def run_forever(settings: Settings, should_stop: Callable[[], bool]) -> None:
    """Sweep every HEARTBEAT_SECONDS (with jitter) until `should_stop()`; survive ledger outages."""
    registry = load_jobs(settings.batch_modules, settings.timezone)
    ledger = open_ledger(settings.ledger_url)
    # Its connection is one of the instance's permits, shared with the web workers.
    here = instance_dir(settings.run_dir, settings.instance_id)
    ledger.share_connections(budget.for_instance(here, settings.connection_permits))
    keeper = Keeper(settings, registry, ledger, _alerts(settings))
    schema_ready = False
    metrics().prime(registry, settings.timezone)
    while not should_stop():
        try:
            # The keeper starts before any worker: it may be the first to open a fresh database.
            if not schema_ready:
                ledger.ensure_schema()
                schema_ready = True
                keeper.seed_metrics()
            keeper.sweep(utcnow())
        except ServiceError as exc:
            metrics().ledger_errors.labels("keeper").inc()
            log.warning("sweep skipped: %s", exc.message)
        except Exception:
            log.exception("sweep failed")
        finally:
            # The keeper holds a connection only while it works: between sweeps an instance's
            # only steady one beside its web workers' is the launcher's (README, Running a fleet).
            ledger.close()
        # Jitter keeps the instances' sweeps from arriving at the database in step.
        end = time.monotonic() + settings.heartbeat_seconds * random.uniform(0.8, 1.2)  # noqa: S311
        while not should_stop() and time.monotonic() < end:
            _sleep_unless(should_stop, min(COUNT_EVERY, end - time.monotonic()))
            # Runs counted every few seconds, not once a sweep: a scrape sees a run's end in time.
            with contextlib.suppress(ServiceError):
                keeper._count_finished_runs()
                keeper.check_launchers(utcnow())  # and dead instances found in seconds
            ledger.close()
    # What is still queued gets a last chance; what Slack does not take by then is logged.
    keeper.alerts.outbox.close(timeout=SEND_TIMEOUT_SECONDS)


def start_beside_arbiter(settings: Settings, is_draining: Callable[[int], bool]) -> int:
    """Fork the keeper from gunicorn's arbiter; it stops when the arbiter drains or dies."""
    arbiter = os.getpid()
    pid = os.fork()
    if pid:
        return pid
    code = 0
    try:
        from service.logs import configure_logging
        from service.runs.isolation import leave_web_worker

        leave_web_worker()
        configure_logging(settings.log_level, instance=settings.instance_id)
        run_forever(settings, lambda: os.getppid() != arbiter or is_draining(arbiter))
    except BaseException:
        log.exception("keeper stopped")
        code = 1
    finally:
        os._exit(code)


def _alerts(settings: Settings) -> Alerts:
    return Alerts(settings.slack_webhook_url, settings.timezone, settings.instance_id, queued=True)


def _sleep_unless(should_stop: Callable[[], bool], seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end and not should_stop():
        time.sleep(min(0.25, max(0.0, end - time.monotonic())))
