"""A keeper sweep never dies on one bad row: it is logged, alerted once and skipped, on both ledgers.

A bad row is written by hand (as an older release or an operator could have): an unknown
status on both backends, and on SQLite a slot in year 999 as releases before the slot range
wrote it (`%Y` without zero padding), which reads back as no valid time.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from freezegun import freeze_time

from service.alerts import Alerts
from service.config import Secret, Settings
from service.jobs import JobSpec, Registry
from service.ledger import ClaimRequest, Ledger, Status, open_ledger
from service.ops.keeper import Keeper
from service.slots import utcnow
from tests.support.slack import SlackReceiver

COLUMNS = "id, job, slot, attempt, status, trigger, created_at, instance, finished_at, params, target"


def _noop(ctx: object) -> None:
    return None


def _keeper(url: str, slack: SlackReceiver) -> Keeper:
    settings = Settings.from_env(
        {"TRIGGER_SECRET": "k" * 40, "LEASE_SECONDS": "60", "INSTANCE_ID": "i-2", "RETENTION_DAYS": "30"}
    )
    registry = Registry()
    registry.add(JobSpec("keepsake", _noop, retry_abandoned=False))
    ledger = open_ledger(url)
    ledger.ensure_schema()
    return Keeper(settings, registry, ledger, Alerts(Secret(slack.url), settings.timezone, "i-2"))


def _write_by_hand(ledger: Ledger, run_id: str, slot: object, status: str, when: object) -> None:
    """Insert a run row as SQL, bypassing the ledger's encoding: what a hand edit or old release left."""
    # Through the backends' one SQL entry point; the statement is a constant.
    ledger._query(  # type: ignore[attr-defined]
        f"INSERT INTO runs ({COLUMNS}) VALUES (?, 'keepsake', ?, 1, ?, 'manual', ?, 'i-2', ?, '{{}}', '')",  # noqa: S608
        (run_id, slot, status, when, when),
    )


def _sweeps_past(keeper: Keeper, slack: SlackReceiver, bad_id: str) -> None:
    """Two sweeps with a lost run, an old finished run and the bad row: all but the bad row handled."""
    before = len(slack.messages)
    # In the past of the real clock too: PostgreSQL judges leases on its own clock.
    with freeze_time("2026-09-01T15:00:00Z") as clock:
        ask = ClaimRequest("keepsake", utcnow(), "manual", "i-2")
        old = keeper.ledger.claim(ask, utcnow())
        clock.tick(timedelta(days=1))
        keeper.ledger.finish(old.run.id, Status.SUCCEEDED, utcnow())
        clock.tick(timedelta(days=39))
        # Accepted and never started: its instance died before the batch began.
        lost = keeper.ledger.claim(ClaimRequest("keepsake", utcnow(), "schedule", "i-1"), utcnow()).run
        clock.tick(timedelta(minutes=2))
        first = keeper.sweep(utcnow())
        assert [run.id for run in first.abandoned] == [lost.id]  # the lease sweep went on
        assert first.pruned == 1  # and so did retention
        clock.tick(timedelta(minutes=1))
        keeper.sweep(utcnow())  # the bad row is still there: skipped again, not alerted again
    texts = [message["text"] for message in slack.wait_for(before + 2)[before:]]
    bad = [text for text in texts if bad_id in text]
    assert len(bad) == 1 and "cannot be read back" in bad[0]
    assert any("`keepsake` abandoned" in text for text in texts)
    assert len(slack.messages) == before + 2
    assert lost.id in {run.id for run in keeper.ledger.runs(job="keepsake")}  # listings skip it too


def test_it_skips_and_alerts_once_a_row_with_an_unknown_status(
    ledger_url: str, slack: SlackReceiver
) -> None:
    keeper = _keeper(ledger_url, slack)
    with freeze_time("2099-01-01T16:00:00Z"):
        # Finished by this instance after the keeper started: the first thing a sweep reads (metrics).
        when = keeper.ledger._encode_time(utcnow())  # type: ignore[attr-defined]
    _write_by_hand(keeper.ledger, "bad-status-row", when, "exploded", when)
    _sweeps_past(keeper, slack, "bad-status-row")


def test_it_skips_and_alerts_once_a_slot_an_older_release_wrote_in_year_999(
    tmp_path: Path, slack: SlackReceiver
) -> None:
    keeper = _keeper(f"sqlite:///{tmp_path / 'ledger.db'}", slack)
    # Accepted long ago and never started: the lease sweep abandons it, and reads it back.
    long_ago = "2026-01-01T00:00:00.000000Z"
    _write_by_hand(keeper.ledger, "year-999-row", "999-06-05T00:00:00.000000Z", "accepted", long_ago)
    _sweeps_past(keeper, slack, "year-999-row")
