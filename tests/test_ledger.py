"""The run ledger's contract, run unchanged against every backend (SQLite and a real PostgreSQL)."""

from __future__ import annotations

import multiprocessing
import socket
from datetime import UTC, datetime, timedelta, timezone
from typing import TYPE_CHECKING

import pytest

from service.errors import LedgerUnavailable, TokenReplayed
from service.ledger import Ledger, Status, open_ledger

if TYPE_CHECKING:
    from tests.support.postgres import PostgresServer


from tests.support.ledgers import (
    ACCEPT_TIMEOUT,
    HOUR,
    LEASE,
    PROCESSES,
    T0,
    THREADS,
    ask,
    at_once,
    finished,
    in_processes,
)


def test_it_claims_a_new_slot_as_a_new_accepted_run(ledger: Ledger) -> None:
    claim = ledger.claim(ask(event_id="evt-1"), T0)
    assert claim.outcome == "new"
    assert (claim.run.job, claim.run.slot, claim.run.attempt) == ("daily", T0, 1)
    assert (claim.run.status, claim.run.trigger, claim.run.event_id) == (Status.ACCEPTED, "schedule", "evt-1")
    assert ledger.get(claim.run.id) == claim.run
    assert ledger.get("no-such-run") is None


def test_it_answers_a_second_claim_of_the_slot_with_the_same_run(ledger: Ledger) -> None:
    first = ledger.claim(ask(), T0)
    again = ledger.claim(ask(trigger="manual", instance="i-2"), T0 + HOUR)
    assert again.outcome == "duplicate"
    assert again.run == first.run
    assert len(ledger.runs()) == 1


def test_it_forces_a_new_attempt_once_the_latest_has_finished(ledger: Ledger) -> None:
    done = finished(ledger)
    forced = ledger.claim(ask(force=True, trigger="manual"), T0 + HOUR)
    assert (forced.outcome, forced.run.attempt, forced.run.status) == ("new", 2, Status.ACCEPTED)
    assert ledger.claim(ask(), T0 + HOUR).run == forced.run
    assert ledger.get(done.id) == done


def test_it_answers_force_while_the_slot_is_active_as_duplicate(ledger: Ledger) -> None:
    first = ledger.claim(ask(), T0)
    ledger.start(first.run.id, "i-1", T0, LEASE)
    forced = ledger.claim(ask(force=True), T0)
    assert (forced.outcome, forced.run.id, forced.run.attempt) == ("duplicate", first.run.id, 1)


def test_it_records_an_overlapping_claim_of_a_forbid_job_as_skipped(ledger: Ledger) -> None:
    running = ledger.claim(ask(), T0).run
    ledger.start(running.id, "i-1", T0, LEASE)
    claim = ledger.claim(ask(T0 + HOUR), T0 + HOUR)
    assert claim.outcome == "overlap"
    assert (claim.run.status, claim.run.finished_at) == (Status.SKIPPED, T0 + HOUR)
    assert claim.run.error is not None and "2026-11-22T15:00:00Z" in claim.run.error
    assert ledger.get(claim.run.id) == claim.run


def test_it_runs_overlapping_slots_when_the_job_allows_it(ledger: Ledger) -> None:
    ledger.claim(ask(overlap="allow"), T0)
    claim = ledger.claim(ask(T0 + HOUR, overlap="allow"), T0 + HOUR)
    assert (claim.outcome, claim.run.status) == ("new", Status.ACCEPTED)


def test_it_does_not_count_other_jobs_or_ended_runs_as_overlap(ledger: Ledger) -> None:
    finished(ledger)
    ledger.claim(ask(T0 + HOUR, job="monthly"), T0)
    assert ledger.claim(ask(T0 + HOUR), T0 + HOUR).outcome == "new"


def test_it_answers_a_skipped_slot_as_duplicate_and_runs_it_when_forced(ledger: Ledger) -> None:
    blocker = ledger.claim(ask(), T0).run
    skipped = ledger.claim(ask(T0 + HOUR), T0 + HOUR).run
    ledger.finish(blocker.id, Status.SUCCEEDED, T0 + HOUR)
    again = ledger.claim(ask(T0 + HOUR), T0 + 2 * HOUR)
    assert (again.outcome, again.run) == ("duplicate", skipped)
    forced = ledger.claim(ask(T0 + HOUR, force=True), T0 + 2 * HOUR)
    assert (forced.outcome, forced.run.attempt) == ("new", 2)


def test_it_refuses_a_token_used_twice(ledger: Ledger) -> None:
    ledger.consume_token("jti-1", T0 + timedelta(minutes=5), T0)
    ledger.consume_token("jti-2", T0 + timedelta(minutes=5), T0)
    with pytest.raises(TokenReplayed):
        ledger.consume_token("jti-1", T0 + timedelta(minutes=5), T0 + timedelta(seconds=1))


def test_it_starts_only_an_accepted_run(ledger: Ledger) -> None:
    run = ledger.claim(ask(), T0).run
    started = ledger.start(run.id, "i-2", T0 + timedelta(seconds=1), LEASE)
    assert started is not None
    assert (started.status, started.instance) == (Status.RUNNING, "i-2")
    assert started.started_at == started.heartbeat_at == T0 + timedelta(seconds=1)
    assert started.lease_until == T0 + timedelta(seconds=1) + LEASE
    assert ledger.start(run.id, "i-3", T0, LEASE) is None
    assert ledger.start("no-such-run", "i-3", T0, LEASE) is None


def test_it_renews_the_lease_of_a_running_run_only(ledger: Ledger) -> None:
    run = ledger.claim(ask(), T0).run
    assert ledger.heartbeat(run.id, T0, LEASE) is False
    ledger.start(run.id, "i-1", T0, LEASE)
    assert ledger.heartbeat(run.id, T0 + timedelta(seconds=30), LEASE) is True
    renewed = ledger.get(run.id)
    assert renewed is not None and renewed.lease_until == T0 + timedelta(seconds=30) + LEASE
    ledger.finish(run.id, Status.SUCCEEDED, T0 + timedelta(seconds=40))
    assert ledger.heartbeat(run.id, T0 + timedelta(seconds=50), LEASE) is False


def test_it_finishes_an_active_run_once(ledger: Ledger) -> None:
    run = ledger.claim(ask(), T0).run
    ledger.start(run.id, "i-1", T0, LEASE)
    ended = ledger.finish(run.id, Status.FAILED, T0 + HOUR, "boom " * 200)
    assert ended is not None
    assert (ended.status, ended.finished_at) == (Status.FAILED, T0 + HOUR)
    assert ended.error is not None and ended.error.startswith("boom") and len(ended.error) <= 500
    assert ledger.finish(run.id, Status.SUCCEEDED, T0 + 2 * HOUR) is None
    assert ledger.get(run.id) == ended


def test_it_finishes_a_run_that_never_started(ledger: Ledger) -> None:
    run = ledger.claim(ask(), T0).run
    ended = ledger.finish(run.id, Status.FAILED, T0, "could not start the batch")
    assert ended is not None and ended.status == Status.FAILED


def test_it_abandons_an_expired_lease_exactly_once(ledger: Ledger) -> None:
    run = ledger.claim(ask(), T0).run
    ledger.start(run.id, "i-1", T0, LEASE)
    assert ledger.expire_leases(T0 + LEASE, ACCEPT_TIMEOUT) == []
    [abandoned] = ledger.expire_leases(T0 + LEASE + timedelta(seconds=1), ACCEPT_TIMEOUT)
    assert (abandoned.id, abandoned.status) == (run.id, Status.ABANDONED)
    assert abandoned.finished_at == T0 + LEASE + timedelta(seconds=1)
    assert abandoned.error is not None and "i-1" in abandoned.error
    assert ledger.expire_leases(T0 + HOUR, ACCEPT_TIMEOUT) == []
    assert ledger.finish(run.id, Status.SUCCEEDED, T0 + HOUR) is None
    assert ledger.heartbeat(run.id, T0 + HOUR, LEASE) is False


def test_it_abandons_a_run_left_accepted_too_long(ledger: Ledger) -> None:
    run = ledger.claim(ask(), T0).run
    assert ledger.expire_leases(T0 + ACCEPT_TIMEOUT, ACCEPT_TIMEOUT) == []
    [abandoned] = ledger.expire_leases(T0 + ACCEPT_TIMEOUT + timedelta(seconds=1), ACCEPT_TIMEOUT)
    assert (abandoned.id, abandoned.status) == (run.id, Status.ABANDONED)


def test_it_keeps_a_renewed_lease_and_reruns_an_abandoned_slot_when_forced(ledger: Ledger) -> None:
    run = ledger.claim(ask(), T0).run
    ledger.start(run.id, "i-1", T0, LEASE)
    ledger.heartbeat(run.id, T0 + timedelta(seconds=50), LEASE)
    assert ledger.expire_leases(T0 + timedelta(seconds=100), ACCEPT_TIMEOUT) == []
    assert len(ledger.expire_leases(T0 + timedelta(seconds=111), ACCEPT_TIMEOUT)) == 1
    assert ledger.claim(ask(), T0 + HOUR).outcome == "duplicate"
    retry = ledger.claim(ask(force=True, instance="i-2"), T0 + HOUR)
    assert (retry.outcome, retry.run.attempt, retry.run.instance) == ("new", 2, "i-2")


def test_it_lists_runs_newest_first_with_filters(ledger: Ledger) -> None:
    first = ledger.claim(ask(overlap="allow"), T0).run
    second = ledger.claim(ask(T0 + HOUR, overlap="allow"), T0 + timedelta(minutes=1)).run
    other = ledger.claim(ask(job="monthly"), T0 + timedelta(minutes=2)).run
    ledger.finish(first.id, Status.FAILED, T0 + HOUR)
    assert [r.id for r in ledger.runs()] == [other.id, second.id, first.id]
    assert [r.id for r in ledger.runs(job="daily")] == [second.id, first.id]
    assert [r.id for r in ledger.runs(status=Status.FAILED)] == [first.id]
    assert [r.id for r in ledger.runs(job="daily", status=Status.ACCEPTED, limit=5)] == [second.id]
    assert [r.id for r in ledger.runs(limit=1)] == [other.id]
    assert ledger.runs(job="nothing") == []


def test_it_selects_runs_created_in_a_half_open_window_oldest_first(ledger: Ledger) -> None:
    created = [T0 - timedelta(seconds=1), T0, T0 + timedelta(hours=23, minutes=59), T0 + 24 * HOUR]
    ids = [ledger.claim(ask(T0 + i * HOUR, overlap="allow"), at).run.id for i, at in enumerate(created)]
    assert [r.id for r in ledger.runs_between(T0, T0 + 24 * HOUR)] == ids[1:3]


def test_it_reports_the_last_run_of_each_job(ledger: Ledger) -> None:
    ledger.claim(ask(overlap="allow"), T0)
    newest = ledger.claim(ask(T0 + HOUR, overlap="allow"), T0 + HOUR).run
    monthly = ledger.claim(ask(job="monthly"), T0).run
    assert ledger.last_runs(["daily", "monthly", "never"]) == {"daily": newest, "monthly": monthly}


def test_it_round_trips_times_as_aware_utc(ledger: Ledger) -> None:
    paris = timezone(timedelta(hours=1))
    slot = datetime(2026, 11, 22, 16, 0, 0, 123456, tzinfo=paris)
    now = datetime(2026, 11, 22, 17, 30, 1, 999999, tzinfo=paris)
    run = ledger.claim(ask(slot), now).run
    ledger.start(run.id, "i-1", now, LEASE)
    stored = ledger.get(run.id)
    assert stored is not None
    assert stored.slot == slot and stored.created_at == now and stored.lease_until == now + LEASE
    for value in (stored.slot, stored.created_at, stored.started_at, stored.heartbeat_at, stored.lease_until):
        assert value is not None and value.utcoffset() == timedelta(0)
    assert stored.slot.isoformat() == "2026-11-22T15:00:00.123456+00:00"
    assert ledger.claim(ask(datetime(2026, 11, 22, 15, 0, 0, 123456, tzinfo=UTC)), now).outcome == "duplicate"


def test_it_round_trips_params(ledger: Ledger) -> None:
    params = {"date": "2026-11-21", "dry_run": True, "n": 3, "ratio": 0.5, "none": None,
              "nested": {"list": [1, "two", {"x": []}]}, "text": "100% sure? é ✓ 'quoted'"}  # fmt: skip
    run = ledger.claim(ask(params=params, trigger="manual"), T0).run
    assert run.params == params
    stored = ledger.get(run.id)
    assert stored is not None and stored.params == params and stored.trigger == "manual"
    assert ledger.claim(ask(T0 + HOUR, overlap="allow"), T0).run.params == {}


def test_it_creates_its_schema_idempotently_even_when_instances_start_together(ledger_url: str) -> None:
    at_once(THREADS, lambda _: open_ledger(ledger_url).ensure_schema())
    ledger = open_ledger(ledger_url)
    ledger.ensure_schema()
    assert ledger.claim(ask(), T0).outcome == "new"
    # The recorded version is part of the contract; both backends answer SQL through one hook.
    assert isinstance(ledger, Ledger)
    assert ledger._query("SELECT version FROM schema_version") == [(3,)]


def test_it_turns_store_errors_into_ledger_unavailable(ledger_url: str) -> None:
    ledger = open_ledger(ledger_url)  # no schema: every statement fails in the store
    with pytest.raises(LedgerUnavailable):
        ledger.get("any")
    with pytest.raises(LedgerUnavailable):
        ledger.claim(ask(), T0)


def test_it_gives_one_new_run_to_threads_claiming_one_slot_at_once(ledger: Ledger) -> None:
    claims = at_once(THREADS, lambda i: ledger.claim(ask(instance=f"i-{i}"), T0))
    assert sorted(c.outcome for c in claims).count("new") == 1
    assert {c.run.id for c in claims} == {ledger.runs()[0].id}
    assert len(ledger.runs()) == 1


def test_it_gives_one_new_run_to_processes_claiming_one_slot_at_once(ledger: Ledger, ledger_url: str) -> None:
    answers = in_processes(ledger_url, [ask(instance=f"i-{i}") for i in range(PROCESSES)])
    assert [outcome for outcome, _ in answers].count("new") == 1, answers
    assert {run_id for _, run_id in answers} == {ledger.runs()[0].id}
    assert len(ledger.runs()) == 1


def test_it_accepts_one_forbid_slot_of_many_claimed_by_threads(ledger: Ledger) -> None:
    claims = at_once(THREADS, lambda i: ledger.claim(ask(T0 + i * HOUR), T0))
    assert sorted(c.outcome for c in claims) == ["new"] + ["overlap"] * (THREADS - 1)
    assert len(ledger.runs(status=Status.ACCEPTED)) == 1
    assert len(ledger.runs(status=Status.SKIPPED)) == THREADS - 1


def test_it_accepts_one_forbid_slot_of_many_claimed_by_processes(ledger: Ledger, ledger_url: str) -> None:
    answers = in_processes(ledger_url, [ask(T0 + i * HOUR) for i in range(PROCESSES)])
    assert sorted(outcome for outcome, _ in answers) == ["new"] + ["overlap"] * (PROCESSES - 1), answers
    assert len(ledger.runs(status=Status.ACCEPTED)) == 1


def test_it_abandons_an_expired_lease_once_when_instances_sweep_together(ledger: Ledger) -> None:
    run = ledger.claim(ask(), T0).run
    ledger.start(run.id, "i-1", T0, LEASE)
    sweeps = at_once(THREADS, lambda _: ledger.expire_leases(T0 + HOUR, ACCEPT_TIMEOUT))
    assert [r.id for sweep in sweeps for r in sweep] == [run.id]


def test_it_opens_its_own_connection_in_a_forked_child(ledger: Ledger) -> None:
    parent_run = ledger.claim(ask(overlap="allow"), T0).run
    context = multiprocessing.get_context("fork")
    go, results = context.Event(), context.Queue()

    def child() -> None:
        go.wait(timeout=30)
        try:
            outcomes = [ledger.claim(ask(T0 + i * HOUR, overlap="allow"), T0).outcome for i in range(1, 51)]
            results.put(outcomes.count("new"))
        except Exception as exc:
            results.put(repr(exc))
        ledger.close()

    process = context.Process(target=child)
    process.start()
    go.set()
    # Parent and child talk to the store at the same time: a shared connection would garble both.
    assert all(ledger.get(parent_run.id) == parent_run for _ in range(50))
    assert results.get(timeout=60) == 50
    process.join(timeout=30)
    assert ledger.get(parent_run.id) == parent_run
    assert len(ledger.runs(limit=100)) == 51


def test_it_raises_ledger_unavailable_while_postgres_is_down_and_recovers(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    ledger = open_ledger(postgres_url)
    ledger.ensure_schema()
    first = ledger.claim(ask(), T0).run
    postgres_server.stop()
    try:
        with pytest.raises(LedgerUnavailable):
            ledger.claim(ask(T0 + 24 * HOUR), T0)
        with pytest.raises(LedgerUnavailable):
            ledger.ping()
    finally:
        postgres_server.start()
    assert ledger.get(first.id) == first
    assert ledger.claim(ask(T0 + 24 * HOUR, overlap="allow"), T0).outcome == "new"


def test_it_works_on_the_first_call_after_a_postgres_restart(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    ledger = open_ledger(postgres_url)
    ledger.ensure_schema()
    ledger.ping()
    postgres_server.stop()
    postgres_server.start()
    assert ledger.claim(ask(), T0).outcome == "new"


def test_it_keeps_the_password_out_of_postgres_errors() -> None:
    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ledger = open_ledger(f"postgresql://batch:pw-s3cret@127.0.0.1:{port}/ledger")
    with pytest.raises(LedgerUnavailable) as caught:
        ledger.ping()
    assert "pw-s3cret" not in str(caught.value)
    assert f"127.0.0.1:{port}/ledger" in str(caught.value)


def test_it_uses_up_a_claims_token_so_a_replay_is_refused(ledger: Ledger) -> None:
    ledger.claim(ask(token_id="jti-once-0001", token_expires=T0 + HOUR), T0)
    with pytest.raises(TokenReplayed):
        ledger.claim(ask(T0 + HOUR, token_id="jti-once-0001", token_expires=T0 + HOUR), T0)


def test_it_keeps_the_token_usable_when_the_claim_fails(ledger: Ledger) -> None:
    # A failure inside the claim's transaction undoes the token's use with it, so a load
    # balancer or client that retries the very same request is not told "replayed".
    with pytest.raises(TypeError):
        ledger.claim(ask(token_id="jti-retry-0001", params={"unserialisable": object()}), T0)
    assert ledger.claim(ask(token_id="jti-retry-0001"), T0).outcome == "new"
