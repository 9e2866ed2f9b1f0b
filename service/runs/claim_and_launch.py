"""The claim-and-launch use case: claim (job, slot) in the ledger and hand a new run to the launcher.

Every entry point that starts a run goes through here: the trigger route (a firing) and the
keeper's recovery (the next attempt of a lost run). Neither forks: the instance's launcher
starts the batch.
"""

from __future__ import annotations

import logging
from datetime import datetime

from service.errors import UnknownJob
from service.jobs import Registry
from service.ledger import Claim, ClaimRequest, Ledger, Run, Status
from service.runs import handoff

log = logging.getLogger("batch_trigger.runner")


class ClaimAndLaunch:
    """Claims runs for this instance and hands new ones to its launcher."""

    def __init__(self, ledger: Ledger, registry: Registry, instance: str, run_dir: str | None) -> None:
        self.ledger = ledger
        self.registry = registry
        self.instance = instance
        self.run_dir = run_dir

    def claim(self, request: ClaimRequest, now: datetime) -> Claim:
        """Claim atomically; a new run is handed to the launcher before this returns."""
        claim = self.ledger.claim(request, now)
        if claim.outcome == "new":
            self.launch(claim.run)
        return claim

    def recover(self, lost: Run, now: datetime) -> Run | None:
        """Claim and launch the next attempt of a lost run, when its job wants one; None otherwise."""
        try:
            spec = self.registry.get(lost.job)
        except UnknownJob:
            return None
        # A broadcast run belonged to its instance (its cache, its files): no other can redo it.
        if lost.target or not spec.retry_abandoned or lost.attempt >= spec.max_attempts:
            return None
        claim = self.claim(
            ClaimRequest(
                job=lost.job,
                slot=lost.slot,
                trigger="schedule" if lost.trigger == "schedule" else "manual",
                instance=self.instance,
                # A recovery waits for a running slot of its job instead of being skipped.
                overlap="defer" if spec.overlap == "forbid" else "allow",
                force=True,
                event_id=lost.event_id,
                params=lost.params,
                recovering=lost.attempt,
            ),
            now,
        )
        if claim.outcome != "new":
            return None
        log.warning("recovering lost run as attempt %d", claim.run.attempt, extra={"run_id": claim.run.id})
        return claim.run

    def launch(self, run: Run) -> None:
        """Hand an accepted run to the launcher; if it cannot take it now, it adopts it shortly."""
        if run.status == Status.ACCEPTED and not handoff.send(self.run_dir, self.instance, run.id):
            log.warning("launcher not reachable; it will adopt the run", extra={"run_id": run.id})
