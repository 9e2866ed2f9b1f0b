"""Pauses in the ledger contract, on every backend: who, why, until; firings recorded `skipped`."""

from __future__ import annotations

from datetime import timedelta

from service.ledger import Ledger, Status
from tests.support.ledgers import HOUR, T0, ask, at_once


def test_it_records_a_paused_jobs_firing_as_skipped_with_who_and_why(ledger: Ledger) -> None:
    pause = ledger.pause("daily", "cli", "data migration", None, T0)
    claim = ledger.claim(ask(T0 + HOUR), T0 + HOUR)
    assert claim.outcome == "paused"
    assert claim.run.status == Status.SKIPPED and claim.run.finished_at == T0 + HOUR
    assert claim.run.error == "paused by cli: data migration"
    assert ledger.pause_of("daily", T0 + HOUR) == pause
    assert ledger.claim(ask(T0, job="monthly"), T0).outcome == "new"  # other jobs fire
    # a redelivery of the slot is answered from the ledger, as any duplicate
    assert ledger.claim(ask(T0 + HOUR), T0 + HOUR).outcome == "duplicate"


def test_it_fires_again_once_resumed(ledger: Ledger) -> None:
    ledger.pause("daily", "cli", "", None, T0)
    lifted = ledger.resume("daily", T0 + HOUR)
    assert lifted is not None and lifted.paused_by == "cli"
    assert ledger.resume("daily", T0 + HOUR) is None  # nothing left to lift
    assert ledger.claim(ask(T0 + 2 * HOUR), T0 + 2 * HOUR).outcome == "new"


def test_it_resumes_by_itself_at_until(ledger: Ledger) -> None:
    until = T0 + HOUR
    ledger.pause("daily", "lambda", "quiet hour", until, T0)
    assert ledger.pauses(T0 + timedelta(minutes=59)).keys() == {"daily"}
    assert ledger.pauses(until) == {}
    assert ledger.claim(ask(until), until).outcome == "new"
    # the keeper tidies expired pauses: each is handed to exactly one caller, fleet-wide
    handed = at_once(8, lambda _: ledger.expire_pauses(until))
    assert [p.job for found in handed for p in found] == ["daily"]
    assert ledger.resume("daily", until) is None


def test_it_replaces_an_earlier_pause(ledger: Ledger) -> None:
    ledger.pause("daily", "alice", "first", T0 + HOUR, T0)
    ledger.pause("daily", "bob", "second", None, T0 + timedelta(minutes=5))
    pause = ledger.pause_of("daily", T0 + 2 * HOUR)
    assert pause is not None and (pause.paused_by, pause.reason, pause.until) == ("bob", "second", None)
    assert pause.to_json()["paused_at"] == "2026-11-22T15:05:00Z"


def test_it_lets_the_recovery_of_an_earlier_run_go_on(ledger: Ledger) -> None:
    run = ledger.claim(ask(T0), T0).run
    ledger.pause("daily", "cli", "", None, T0)
    assert [lost.id for lost in ledger.expire_leases(T0 + HOUR, timedelta(minutes=10))] == [run.id]
    recovered = ledger.claim(ask(T0, recovering=run.attempt, force=True), T0 + HOUR)
    assert recovered.outcome == "new" and recovered.run.attempt == 2
