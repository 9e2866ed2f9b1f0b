"""The launcher: one small process per instance that starts, watches and records every batch.

Started as `python -m service.runs.launcher` (a fresh interpreter: no Flask app, no web worker
state in its image) by the shipped gunicorn configuration and by `batch-trigger keeper`, which
restart it when it dies (`service.runs.supervisor`). Web workers and the keeper hand it run ids
over a Unix socket (`service.runs.handoff`). From one loop it forks each batch from its own small
image, watches them all, renews all their leases with one statement per heartbeat, fences them
(`service.runs.fencing`), stops them at their timeout, and records outcomes through one ledger
connection, keeping those the ledger cannot take yet (`service.runs.outcomes`).

It stays single-threaded on purpose: a process that forks must hold no lock another thread
could hold (a fork from a threaded web worker is what left batches hung on SQLite's mutex).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import IO

from service.alerts import Alerts
from service.config import Settings
from service.errors import LedgerUnavailable, ServiceError, UnknownJob
from service.jobs import Registry, load_jobs
from service.ledger import Ledger, Status, open_ledger
from service.runs import fencing, handoff, localruns
from service.runs.batches import Batch, fields, start_batch
from service.runs.claim_and_launch import ClaimAndLaunch
from service.runs.liveness import LauncherLock
from service.runs.outcomes import Outcomes
from service.runs.runner import exit_outcome
from service.runs.spool import Outcome, Spool
from service.runs.waiting import readable
from service.slots import utcnow

log = logging.getLogger("batch_trigger.runner")
#: How often an outcome or a start the ledger refused is tried again; heartbeats too, after a failure.
RETRY_SECONDS = 1.0


class Launcher:
    """Starts the instance's batches, keeps their leases, and records their outcomes."""

    def __init__(self, settings: Settings, registry: Registry, ledger: Ledger, alerts: Alerts) -> None:
        self.settings = settings
        self.registry = registry
        self.ledger = ledger
        self.alerts = alerts
        self.lease = timedelta(seconds=settings.lease_seconds)
        self.directory = handoff.instance_dir(settings.run_dir, settings.instance_id)
        self.outcomes = Outcomes(ledger, registry, alerts, Spool(self.directory / "outcomes"))
        self.use_case = ClaimAndLaunch(ledger, registry, settings.instance_id, settings.run_dir)
        self.batches: dict[str, Batch] = {}
        self.waiting: set[str] = set()  # handed to us while the ledger did not answer
        self.stopping: str | None = None
        self.next_beat = 0.0
        self.next_retry = 0.0
        self.lock = LauncherLock(ledger, settings.instance_id, settings.launcher_lock)
        self.sock = handoff.listen(settings.run_dir, settings.instance_id)
        self.outcomes.in_child = self.sock.close

    def serve(self, wake: list[int], stop_reason: Callable[[], str | None]) -> None:
        """Run until `stop_reason()` gives one; then stop the batches and flush their outcomes."""
        if not self._take_over(stop_reason):
            return  # asked to stop before the ledger ever answered: nothing was started
        flush_until: float | None = None
        while True:
            reason = stop_reason() if self.stopping is None else None
            if reason is not None:
                self._stop_all(reason)
                wake = wake[:1]  # a dead parent's pidfd stays readable: stop watching it
            if self.stopping is not None and not self.batches:
                flush_until = flush_until or time.monotonic() + self.settings.kill_grace_seconds + 5
                if not self.outcomes.waiting or time.monotonic() >= flush_until:
                    break
            self._tick(wake)
        if self.outcomes.waiting:
            log.error("%d outcome(s) left in the spool for the next launcher", len(self.outcomes.waiting))

    def _tick(self, wake: list[int]) -> None:
        now = time.monotonic()
        due = [self.next_beat, *(b.next_due() for b in self.batches.values())]
        if self.outcomes.waiting or self.waiting or self.lock.lost_at is not None:
            due.append(self.next_retry)
        watched = [self.sock.fileno(), *wake]
        session = self.lock.session_fd()
        if session is not None:
            watched.append(session)  # readable when the server ends the session: lock again at once
        for batch in self.batches.values():
            watched += batch.fds()
        timeout = min(due) - now
        if not all(batch.pollable for batch in self.batches.values()):
            timeout = min(timeout, 0.2)  # no pidfd: look at the batches now and then
        with contextlib.suppress(InterruptedError):
            ready = readable(watched, timeout)
            if wake[0] in ready:
                with contextlib.suppress(BlockingIOError):
                    os.read(wake[0], 512)  # the signal wake-up bytes
            if session is not None and session in ready:
                self.lock.held()
        self._start_handed()
        for batch in list(self.batches.values()):
            batch.pump_output()
            code = batch.process.wait(0)
            if code is not None:
                self._ended(batch, code)
                # Starts go first: a run handed over while others' ends are recorded does not wait.
                self._start_handed()
            else:
                batch.enforce(time.monotonic(), self.settings.kill_grace_seconds)
        now = time.monotonic()
        if now >= self.next_beat:
            self._beat()
        retrying = self.outcomes.waiting or self.waiting or self.lock.lost_at is not None
        if retrying and now >= self.next_retry:
            self.next_retry = now + RETRY_SECONDS
            if self.lock.must_fence():
                for batch in self.batches.values():
                    batch.interrupt(
                        "the launcher lost its database session: another instance may take the run over",
                        now,
                        self.settings.kill_grace_seconds,
                    )
            self.outcomes.retry()
            for run_id in list(self.waiting):
                self._start(run_id)
        self.outcomes.reap()

    def _start_handed(self) -> None:
        for run_id in handoff.receive(self.sock):
            self._start(run_id)

    def _take_over(self, stop_reason: Callable[[], str | None]) -> bool:
        """At start: record spooled outcomes, end what a dead launcher left, adopt accepted runs.

        Waits for the ledger (and, on PostgreSQL, the instance's lock); False if asked to stop first.
        """
        for run_id, pid in localruns.leftovers(self.settings.run_dir, self.settings.instance_id).items():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                # Only a group of this instance's session: after a reboot the pid may be anyone's.
                if os.getsid(pid) == os.getsid(0):
                    log.warning("stopping a batch a dead launcher left: %d", pid, extra={"run_id": run_id})
                    os.killpg(pid, signal.SIGKILL)
        self.outcomes.load_spool()
        while not (self._ready() and self.lock.held()):
            if stop_reason() is not None:
                return False
            time.sleep(RETRY_SECONDS)
        self.outcomes.retry()
        self._adopt(at_start=True)
        return True

    def _ready(self) -> bool:
        try:
            self.ledger.ensure_schema()
        except ServiceError as exc:
            log.warning("launcher waits for the ledger: %s", exc.message)
            return False
        return True

    def _adopt(self, at_start: bool = False) -> None:
        """Start this instance's accepted runs nobody handed over; at start, end orphaned running ones."""
        for run in self.ledger.active_on(self.settings.instance_id):
            if run.id in self.batches or run.id in self.outcomes.waiting or run.id in self.waiting:
                continue
            if run.status == Status.ACCEPTED:
                self._start(run.id)
            elif at_start:
                # Its batch belonged to a launcher that died (and was killed above): it is lost
                # here, and the next attempt starts at once instead of after its lease.
                ended = self.ledger.finish(
                    run.id, Status.INTERRUPTED, utcnow(), "the launcher stopped while the batch ran"
                )
                if ended is not None:
                    self.outcomes.announce(ended, "")
                    self.use_case.recover(ended, utcnow())

    def _start(self, run_id: str) -> None:
        if run_id in self.batches or run_id in self.outcomes.waiting or self.stopping is not None:
            return
        if not self.lock.held():
            self.waiting.add(run_id)
            return
        renewed_at = time.monotonic()
        try:
            # None: the lease is on the ledger's clock (the database's on PostgreSQL), never ours.
            run = self.ledger.start(run_id, self.settings.instance_id, None, self.lease)
        except LedgerUnavailable as exc:
            log.warning("cannot start the run yet: %s", exc.message, extra={"run_id": run_id})
            self.waiting.add(run_id)
            return
        self.waiting.discard(run_id)
        if run is None:
            return  # already started, or ended before it began (a sweep abandoned it)
        try:
            spec = self.registry.get(run.job)
        except UnknownJob:
            unknown = Outcome(Status.FAILED, f"job {run.job!r} is not registered on this instance")
            self.outcomes.keep(run, unknown, "")
            return
        try:
            until = fencing.deadline(renewed_at, self.lease.total_seconds())
            batch = start_batch(self.settings, self.ledger, spec, run, until)
        except OSError as exc:
            self.outcomes.keep(run, Outcome(Status.FAILED, f"could not start the batch: {exc}"), "")
            return
        self.batches[run.id] = batch
        try:
            localruns.register(self.settings.run_dir, self.settings.instance_id, run.id, batch.process.pid)
        except OSError as exc:  # RUN_DIR full or gone: the batch runs on, only the drain will not see it
            log.error("cannot note the running batch under RUN_DIR: %s", exc, extra=fields(run))
        log.info("batch started", extra=fields(run))

    def _ended(self, batch: Batch, code: int) -> None:
        run = batch.run
        error = batch.process.error_text()
        excerpt = batch.close()
        del self.batches[run.id]
        with contextlib.suppress(OSError):
            localruns.unregister(self.settings.run_dir, self.settings.instance_id, run.id)
        if batch.lost:
            log.warning("batch stopped: the run is no longer ours", extra=fields(run))
            return
        outcome = batch.stop_reason or exit_outcome(code, error)
        if batch.stop_reason is None and batch.fenced(code):
            outcome = Outcome(
                Status.INTERRUPTED,
                "the batch stopped itself: its lease could not be renewed in time (ledger unreachable?)",
                completed=False,
            )
        self.outcomes.keep(run, outcome, excerpt)

    def _beat(self) -> None:
        """Renew every lease this launcher keeps, in one statement; fence or stop on the answer."""
        self.next_beat = time.monotonic() + self.settings.heartbeat_seconds
        ids = [run_id for run_id, batch in self.batches.items() if not batch.lost]
        ids += list(self.outcomes.waiting)
        if self.stopping is None:
            with contextlib.suppress(LedgerUnavailable):
                self._adopt()
        if not ids:
            return
        if not self.lock.held():
            self.next_beat = time.monotonic() + RETRY_SECONDS
            return
        renewed_at = time.monotonic()
        try:
            ours = self.ledger.renew(ids, None, self.lease)  # on the ledger's clock, as at start
        except LedgerUnavailable as exc:
            log.warning("heartbeat failed; retrying: %s", exc.message)
            self.next_beat = time.monotonic() + RETRY_SECONDS
            return
        until = fencing.deadline(renewed_at, self.lease.total_seconds())
        for run_id in ids:
            batch = self.batches.get(run_id)
            if batch is not None and run_id in ours:
                batch.extend(until)
            elif batch is not None:
                # Another instance declared this run lost: stop, so the body never runs twice at once.
                log.warning("run no longer ours; stopping the batch", extra=fields(batch.run))
                batch.lose(time.monotonic(), self.settings.kill_grace_seconds)
            elif run_id not in ours and run_id in self.outcomes.waiting:
                self.outcomes.record(run_id)

    def _stop_all(self, reason: str) -> None:
        self.stopping = reason
        for batch in self.batches.values():
            batch.interrupt(reason, time.monotonic(), self.settings.kill_grace_seconds)


@contextlib.contextmanager
def instance_lock(settings: Settings) -> Iterator[IO[str]]:
    """One launcher per instance: wait until a previous one (still stopping its batches) has gone."""
    directory = handoff.instance_dir(settings.run_dir, settings.instance_id)
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "launcher.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.write(str(os.getpid()))
        handle.flush()
        yield handle


def main() -> int:
    """Entry point of `python -m service.runs.launcher`: serve until SIGTERM or the parent's death."""
    from service.logs import configure_logging

    settings = Settings.from_env()
    configure_logging(settings.log_level, instance=settings.instance_id)
    registry = load_jobs(settings.batch_modules, settings.timezone)
    ledger = open_ledger(settings.ledger_url)
    alerts = Alerts(settings.slack_webhook_url, settings.timezone, settings.instance_id)
    stop: list[str] = []
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)

    def _stop(signum: int, frame: object) -> None:
        stop.append("the instance shut down before the batch finished")

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _stop)
    os.set_blocking(wake_read, False)
    wake = [wake_read]
    parent = os.getppid()
    with contextlib.suppress(OSError, AttributeError):
        wake.append(os.pidfd_open(parent))  # readable once the parent (arbiter, keeper) is gone

    def stop_reason() -> str | None:
        if stop:
            return stop[0]
        if os.getppid() != parent:
            # The arbiter (or the keeper command) died: stop the batches rather than leave them
            # to nobody; the next start of this instance, or another instance, runs them again.
            return "the instance's server stopped before the batch finished"
        return None

    with instance_lock(settings):
        launcher = Launcher(settings, registry, ledger, alerts)
        log.info("launcher started (pid %d)", os.getpid())
        launcher.serve(wake, stop_reason)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
