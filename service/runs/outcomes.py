"""Outcomes the launcher records: at once, else kept in memory and the spool until the ledger answers.

A run's outcome that arrives after the run was declared `abandoned` is reconciled (recorded as
what it was, under the job's claim lock); alerts and notices then go out from a short-lived
child process, so Slack never blocks the launcher's loop.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable

from service.alerts import Alerts
from service.errors import LedgerUnavailable
from service.jobs import Registry
from service.ledger import Ledger, Run
from service.runs.batches import fields
from service.runs.runner import notice_for
from service.runs.spool import Outcome, Spool
from service.slots import utcnow

log = logging.getLogger("batch_trigger.runner")


class Outcomes:
    """The launcher's book of outcomes: recorded, waiting (in memory and spooled), announced."""

    def __init__(self, ledger: Ledger, registry: Registry, alerts: Alerts, spool: Spool) -> None:
        self.ledger = ledger
        self.registry = registry
        self.alerts = alerts
        self.spool = spool
        self.waiting: dict[str, tuple[Outcome, str]] = {}  # run id → outcome, alert excerpt
        self._spooled: set[str] = set()
        self._announcers: list[int] = []
        #: Called in an announcer child first (the launcher closes its socket there).
        self.in_child: Callable[[], None] = lambda: None

    def load_spool(self) -> None:
        """Take over what a previous launcher of this instance spooled."""
        for run_id, outcome in self.spool.load().items():
            self.waiting[run_id] = (outcome, "")
            self._spooled.add(run_id)

    def keep(self, run: Run, outcome: Outcome, excerpt: str) -> None:
        """Record the outcome; what the ledger does not take now is spooled and tried again."""
        outcome = Outcome(outcome.status, outcome.error, outcome.finished_at or utcnow(), outcome.completed)
        self.waiting[run.id] = (outcome, excerpt)
        self.record(run.id)
        if run.id in self.waiting:
            # On disk only when it waits: a launcher that dies in the milliseconds before the first
            # try leaves the run `running`, and its successor runs it again (at least once).
            try:
                self.spool.put(run.id, outcome)
                self._spooled.add(run.id)
            except OSError as exc:  # a full disk: the outcome waits in memory only
                log.error("cannot spool the outcome: %s", exc, extra=fields(run))

    def record(self, run_id: str) -> None:
        """Try to record one waiting outcome (it stays waiting while the ledger does not answer)."""
        outcome, excerpt = self.waiting[run_id]
        finished_at = outcome.finished_at or utcnow()
        try:
            ended = self.ledger.finish(run_id, outcome.status, finished_at, outcome.error)
            if ended is None and outcome.completed:
                # Declared abandoned while the outcome was in flight: record what it was, under the
                # job's claim lock, so a recovery claim either sees it or was already made.
                ended = self.ledger.reconcile(run_id, outcome.status, finished_at, outcome.error)
                if ended is not None:
                    log.warning("outcome recorded late, over `abandoned`", extra=fields(ended))
        except LedgerUnavailable as exc:
            log.warning("cannot record the outcome yet: %s", exc.message, extra={"run_id": run_id})
            return
        del self.waiting[run_id]
        if run_id in self._spooled:
            self._spooled.discard(run_id)
            self.spool.remove(run_id)
        if ended is not None:
            log.info("batch ended %s", ended.status, extra=fields(ended))
            self.announce(ended, excerpt)

    def retry(self) -> None:
        """Try every waiting outcome again."""
        for run_id in list(self.waiting):
            self.record(run_id)

    def announce(self, run: Run, excerpt: str) -> None:
        """Alerts and notices go out from a short-lived child: Slack never blocks the launcher."""
        notice = notice_for(self.registry, self.ledger, run)
        if notice is None:
            return
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                self.in_child()
                notice(self.alerts, excerpt)
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        self._announcers.append(pid)

    def reap(self) -> None:
        """Reap announcer children that are done."""
        for pid in list(self._announcers):
            with contextlib.suppress(ChildProcessError):
                if os.waitpid(pid, os.WNOHANG)[0] == 0:
                    continue
            self._announcers.remove(pid)
