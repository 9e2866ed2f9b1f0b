"""The keeper's sweep in-process on a real SQLite ledger: abandonment, opt-out, retention."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from freezegun import freeze_time

from service.alerts import Alerts
from service.config import Secret, Settings
from service.jobs import JobSpec, Registry
from service.ledger import ClaimRequest, Status, open_ledger
from service.ops.keeper import Keeper
from service.slots import utcnow
from tests.support.slack import SlackReceiver


def _noop(ctx: object) -> None:
    return None


def _keeper(tmp_path: Path, slack: SlackReceiver, **env: str) -> Keeper:
    settings = Settings.from_env(
        {"TRIGGER_SECRET": "k" * 40, "LEASE_SECONDS": "60", "INSTANCE_ID": "i-2", **env}
    )
    registry = Registry()
    registry.add(JobSpec("keepsake", _noop, retry_abandoned=False))
    ledger = open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger.ensure_schema()
    return Keeper(settings, registry, ledger, Alerts(Secret(slack.url), settings.timezone, "i-2"))


def test_it_abandons_an_expired_lease_alerts_and_leaves_an_opted_out_job_alone(
    tmp_path: Path, slack: SlackReceiver
) -> None:
    keeper = _keeper(tmp_path, slack)
    before = len(slack.messages)
    with freeze_time("2026-11-22T15:00:00Z") as clock:
        run = keeper.ledger.claim(ClaimRequest("keepsake", utcnow(), "schedule", "i-1"), utcnow()).run
        keeper.ledger.start(run.id, "i-1", utcnow(), timedelta(seconds=60))
        clock.tick(timedelta(seconds=59))
        assert keeper.sweep(utcnow()).abandoned == []
        # Past the lease, the fencing margin (LEASE_SECONDS / 12) still belongs to the batch.
        clock.tick(timedelta(seconds=5))
        assert keeper.sweep(utcnow()).abandoned == []
        clock.tick(timedelta(seconds=2))
        sweep = keeper.sweep(utcnow())
        assert [r.id for r in sweep.abandoned] == [run.id] and sweep.recovered == []
        assert keeper.sweep(utcnow()).abandoned == []  # once
    stored = keeper.ledger.get(run.id)
    assert stored is not None and stored.status == Status.ABANDONED and "i-1" in (stored.error or "")
    texts = [m["text"] for m in slack.wait_for(before + 1)[before:]]
    assert len(texts) == 1 and "`keepsake` abandoned" in texts[0]
    assert keeper.ledger.runs(job="keepsake") == [stored]  # no re-run for a job that opts out


def test_it_prunes_runs_past_the_retention_hourly(tmp_path: Path, slack: SlackReceiver) -> None:
    keeper = _keeper(tmp_path, slack, RETENTION_DAYS="30")
    ids = []
    with freeze_time("2026-10-01T00:00:00Z") as clock:
        for _ in range(2):
            run = keeper.ledger.claim(ClaimRequest("keepsake", utcnow(), "manual", "i-2"), utcnow()).run
            keeper.ledger.finish(run.id, Status.SUCCEEDED, utcnow())
            ids.append(run.id)
            clock.tick(timedelta(minutes=30))
        clock.move_to("2026-10-31T00:10:00Z")
        assert keeper.sweep(utcnow()).pruned == 1  # the first run is past 30 days
        clock.move_to("2026-10-31T00:40:00Z")
        assert keeper.sweep(utcnow()).pruned == 0  # the second is too, but pruning waits an hour
        clock.move_to("2026-10-31T01:10:01Z")
        assert keeper.sweep(utcnow()).pruned == 1
    assert [keeper.ledger.get(run_id) for run_id in ids] == [None, None]
