"""Run logs in the ledger, on every backend: chunks by offset, the bound's gap, retention."""

from __future__ import annotations

from datetime import timedelta

from service.ledger import Ledger, Status
from service.runs.logbound import LogBound
from tests.support.ledgers import LEASE, T0, ask, finished


def _lines(count: int, width: int = 100) -> bytes:
    return b"".join(f"{i:0{width - 1}d}\n".encode() for i in range(count))


def test_it_reads_a_log_back_from_any_offset(ledger: Ledger) -> None:
    run = finished(ledger)
    ledger.append_log(run.id, 0, b"first line\n")
    ledger.append_log(run.id, 11, b"second line\n")
    whole = ledger.read_log(run.id)
    assert whole.text == b"first line\nsecond line\n" and whole.next_offset == 23
    assert ledger.read_log(run.id, 11).text == b"second line\n"
    assert ledger.read_log(run.id, 14).text == b"ond line\n"
    assert ledger.read_log(run.id, 23).text == b"" and ledger.read_log(run.id, 23).next_offset == 23
    assert ledger.read_log("no-such-run").text == b""


def test_it_keeps_a_retried_chunk_once(ledger: Ledger) -> None:
    run = finished(ledger)
    ledger.append_log(run.id, 0, b"once\n")
    ledger.append_log(run.id, 0, b"once\n")
    assert ledger.read_log(run.id).text == b"once\n"


def test_it_bounds_a_long_log_to_its_head_and_tail_with_a_marker(ledger: Ledger) -> None:
    run = finished(ledger)
    bound = LogBound(limit=20_000)
    produced = _lines(2_000)  # 200 kB of 100-byte lines
    for start in range(0, len(produced), 5_000):
        bound.add(produced[start : start + 5_000])
        bound.send(run.id, ledger)
    page = ledger.read_log(run.id)
    head, marker, tail = page.text.partition("… ".encode())
    omitted = int(tail.split(b" ")[0])
    tail = tail.split(b"\n", 1)[1]
    assert produced.startswith(head) and produced.endswith(tail) and marker
    assert len(head) <= 10_000 and len(tail) <= 10_000 and len(head) + len(tail) + omitted == len(produced)
    assert page.next_offset == len(produced)
    stored = sum(len(chunk) for _, chunk in ledger._select_log_chunks(run.id, 0))
    assert stored <= 20_000


def test_it_lets_a_follower_continue_across_the_gap(ledger: Ledger) -> None:
    run = finished(ledger)
    bound = LogBound(limit=2_000)
    bound.add(_lines(5))  # 500 bytes, all in the head
    bound.send(run.id, ledger)
    first = ledger.read_log(run.id)
    assert first.next_offset == 500
    for _ in range(10):
        bound.add(_lines(5))
        bound.send(run.id, ledger)
    rest = ledger.read_log(run.id, first.next_offset)
    assert b"bytes omitted" in rest.text and rest.next_offset == 5_500


def test_it_prunes_a_runs_log_with_the_run(ledger: Ledger) -> None:
    old = finished(ledger)
    kept = ledger.claim(ask(T0 + timedelta(hours=1)), T0).run
    ledger.start(kept.id, "i-1", T0, LEASE)
    ledger.finish(kept.id, Status.FAILED, T0 + timedelta(hours=2))
    for run in (old, kept):
        ledger.append_log(run.id, 0, b"output\n")
    assert ledger.prune(before=T0 + timedelta(hours=1)) == 1
    assert ledger.read_log(old.id).text == b""
    assert ledger.read_log(kept.id).text == b"output\n"
