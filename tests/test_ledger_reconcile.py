"""A late outcome against the recovery of the same run, on every backend: recorded as it was, run once."""

from __future__ import annotations

from datetime import timedelta

from service.ledger import ClaimRequest, Ledger, Status
from tests.support.ledgers import LEASE, T0, ask

TIMEOUT = timedelta(minutes=10)


def _abandoned(ledger: Ledger) -> str:
    """A run of `daily` at T0 that started and whose lease ran out: abandoned."""
    run = ledger.claim(ask(), T0).run
    ledger.start(run.id, "i-1", T0, LEASE)
    lost_at = T0 + LEASE + timedelta(seconds=6)
    [lost] = ledger.expire_leases(lost_at, TIMEOUT, margin=timedelta(seconds=5))
    assert lost.id == run.id and lost.status == Status.ABANDONED
    return run.id


def _recovery(attempt: int) -> ClaimRequest:
    return ask(instance="i-2", force=True, overlap="defer", recovering=attempt)


def test_it_records_a_late_outcome_over_abandoned_and_the_recovery_then_starts_nothing(
    ledger: Ledger,
) -> None:
    run_id = _abandoned(ledger)
    assert ledger.finish(run_id, Status.SUCCEEDED, T0 + timedelta(minutes=2)) is None  # no longer active
    late = ledger.reconcile(run_id, Status.SUCCEEDED, T0 + timedelta(minutes=2))
    assert late is not None and late.status == Status.SUCCEEDED and "recorded late" in (late.error or "")
    claim = ledger.claim(_recovery(1), T0 + timedelta(minutes=3))
    assert (claim.outcome, claim.run.id) == ("duplicate", run_id)
    assert [r.attempt for r in ledger.runs(job="daily")] == [1]


def test_it_records_a_late_outcome_after_the_recovery_claimed_the_next_attempt(ledger: Ledger) -> None:
    run_id = _abandoned(ledger)
    second = ledger.claim(_recovery(1), T0 + timedelta(minutes=2))
    assert second.outcome == "new" and second.run.attempt == 2
    late = ledger.reconcile(run_id, Status.FAILED, T0 + timedelta(minutes=3), "ValueError: boom")
    assert late is not None and late.status == Status.FAILED  # the history says what attempt 1 did
    assert ledger.get(second.run.id) == second.run  # and the next attempt is left as it was


def test_it_reconciles_only_an_abandoned_run(ledger: Ledger) -> None:
    run = ledger.claim(ask(), T0).run
    ledger.start(run.id, "i-1", T0, LEASE)
    assert ledger.reconcile(run.id, Status.SUCCEEDED, T0) is None  # still running: finish records it
    assert ledger.finish(run.id, Status.SUCCEEDED, T0) is not None
    assert ledger.reconcile(run.id, Status.FAILED, T0) is None  # ended: stays what it was
    assert ledger.reconcile("no-such-run", Status.FAILED, T0) is None


def test_it_renews_many_leases_in_one_call_and_names_those_no_longer_running(ledger: Ledger) -> None:
    runs = [ledger.claim(ask(T0 + timedelta(hours=n), overlap="allow"), T0).run for n in range(3)]
    for run in runs:
        ledger.start(run.id, "i-1", T0, LEASE)
    ledger.finish(runs[1].id, Status.SUCCEEDED, T0)
    assert ledger.renew([r.id for r in runs], T0 + timedelta(seconds=30), LEASE) == {runs[0].id, runs[2].id}
    assert {r.id for r in ledger.active_on("i-1")} == {runs[0].id, runs[2].id}
    assert ledger.renew([], T0, LEASE) == set()
