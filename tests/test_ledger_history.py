"""The ledger's history contract on every backend: paging, filters, retention, watchdog records."""

from __future__ import annotations

from datetime import timedelta

import pytest

from service.ledger import Ledger, Status, sqlite
from tests.support import bulk
from tests.support.ledgers import HOUR, LEASE, T0, ask, at_once, finished


def test_it_pages_runs_newest_first_with_before(ledger: Ledger) -> None:
    for n in range(5):
        ledger.claim(ask(T0 + n * HOUR, overlap="allow"), T0 + n * HOUR)
    first = ledger.runs(limit=2)
    assert [r.slot for r in first] == [T0 + 4 * HOUR, T0 + 3 * HOUR]
    second = ledger.runs(limit=2, before=first[-1].created_at)
    assert [r.slot for r in second] == [T0 + 2 * HOUR, T0 + HOUR]
    assert [r.slot for r in ledger.runs(limit=2, before=second[-1].created_at)] == [T0]


def test_it_filters_runs_by_slot_job_and_status(ledger: Ledger) -> None:
    done = finished(ledger, T0)
    ledger.claim(ask(T0, job="monthly"), T0)
    assert [r.id for r in ledger.runs(slot=T0, job="daily")] == [done.id]
    assert {r.job for r in ledger.runs(slot=T0)} == {"daily", "monthly"}
    assert [r.job for r in ledger.runs(status=Status.ACCEPTED)] == ["monthly"]


def test_it_lists_the_runs_an_instance_finished_after_a_time(ledger: Ledger) -> None:
    done = finished(ledger, T0)
    assert [r.id for r in ledger.finished_on("i-1", T0)] == [done.id]
    assert ledger.finished_on("i-1", T0 + HOUR) == []
    assert ledger.finished_on("i-2", T0) == []


def test_it_prunes_finished_runs_older_than_the_cutoff_and_keeps_active_ones(ledger: Ledger) -> None:
    old = finished(ledger, T0)
    active = ledger.claim(ask(T0 + HOUR, overlap="allow"), T0)
    ledger.start(active.run.id, "i-1", T0, LEASE)
    assert ledger.prune(before=T0 + timedelta(days=1)) == 1
    assert ledger.get(old.id) is None and ledger.get(active.run.id) is not None
    assert ledger.prune(before=T0 + timedelta(days=1)) == 0


def test_it_prunes_in_batches_everything_past_the_cutoff_and_nothing_else(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SQLite deletes in batches (a window of the oldest runs, then a few runs per transaction);
    # PostgreSQL in one statement per table. Both must delete the same runs, logs and records.
    monkeypatch.setattr(sqlite, "PRUNE_WINDOW", 20)
    monkeypatch.setattr(sqlite, "PRUNE_BATCH", 7)
    cutoff = T0 + timedelta(days=1)
    old = [finished(ledger, T0 - n * HOUR) for n in range(23)]  # a window of 3 batches, then one more
    old += [finished(ledger, T0 - n * HOUR, Status.FAILED) for n in range(23, 26)]
    old += [ledger.claim(ask(T0 - n * HOUR, job="monthly"), T0).run for n in range(3)]
    for run in old[-3:]:
        ledger.start(run.id, "i-1", T0, LEASE)
        ledger.finish(run.id, Status.SUCCEEDED, T0 + HOUR)
    active = ledger.claim(ask(T0 + HOUR, overlap="allow"), T0).run
    ledger.start(active.id, "i-1", T0, LEASE)
    newer = ledger.claim(ask(T0 + 2 * HOUR, overlap="allow"), T0).run
    ledger.start(newer.id, "i-1", T0, LEASE)
    ledger.finish(newer.id, Status.FAILED, cutoff + HOUR)
    for run in (*old, active, newer):
        ledger.append_log(run.id, 0, b"output\n")
    for n in range(21):
        ledger.mark_missed("monthly", T0 - n * HOUR, T0)
    ledger.mark_missed("monthly", cutoff, cutoff + HOUR)

    with bulk.recorded(ledger) as statements:
        assert ledger.prune(before=cutoff) == 29

    assert all(ledger.get(run.id) is None and ledger.read_log(run.id).text == b"" for run in old)
    for kept in (active, newer):
        assert ledger.get(kept.id) is not None and ledger.read_log(kept.id).text == b"output\n"
    assert ledger.mark_missed("monthly", T0 - 20 * HOUR, T0) is True  # its record went
    assert ledger.mark_missed("monthly", cutoff, cutoff + HOUR) is False  # the newer one stayed
    assert ledger.prune(before=cutoff) == 0
    if isinstance(ledger, sqlite.SqliteLedger):
        # 29 runs: a window of 20 (batches of 7, 7, 6), then one of 9 (7, 2); each batch's logs,
        # then its runs. Watchdog records: 7, 7, 7, then none left.
        deletes = [(text.split()[2], args) for text, args in statements if text.startswith("DELETE")]
        assert [table for table, _ in deletes] == ["run_logs", "runs"] * 5 + ["missed_slots"] * 4
        sizes = [len(args) for table, args in deletes if table == "runs"]
        assert sizes == [7, 7, 6, 7, 2]
        assert len(statements) == 2 + len(deletes)  # and the two windows' reads


def test_it_remembers_when_it_began_watching_a_job_and_where_it_last_checked(ledger: Ledger) -> None:
    assert ledger.watch_from(["daily", "monthly"], T0) == {"daily": T0, "monthly": T0}
    assert ledger.watch_from(["daily"], T0 + HOUR) == {"daily": T0}
    ledger.mark_checked("daily", T0 + 2 * HOUR)
    ledger.mark_checked("daily", T0 + HOUR)  # a slower instance's older check does not move it back
    assert ledger.watch_from(["daily", "monthly"], T0 + 3 * HOUR) == {"daily": T0 + 2 * HOUR, "monthly": T0}
    assert ledger.watch_from([], T0) == {}


def test_it_reports_a_missed_slot_to_exactly_one_of_many_callers(ledger: Ledger) -> None:
    firsts = at_once(8, lambda _: ledger.mark_missed("daily", T0, T0 + HOUR))
    assert firsts.count(True) == 1
    assert ledger.mark_missed("daily", T0 + timedelta(days=1), T0 + HOUR) is True


def test_it_lists_the_slots_that_succeeded(ledger: Ledger) -> None:
    finished(ledger, T0)
    finished(ledger, T0 + HOUR, Status.FAILED)
    assert ledger.succeeded_slots("daily", T0 - HOUR, T0 + 2 * HOUR) == {T0}
    assert ledger.succeeded_slots("daily", T0 + HOUR, T0 + 2 * HOUR) == set()
