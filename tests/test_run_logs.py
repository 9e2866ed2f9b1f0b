"""Run logs in the ledger, on every backend: chunks by offset, the bound's gap, retention."""

from __future__ import annotations

import os
import time
from datetime import timedelta

from service.ledger import Ledger, Status
from service.runs.capture import OutputCapture
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


def _texts(ledger: Ledger, run_id: str) -> list[str]:
    """The stored lines without their time and stream."""
    return [line.split(" ", 2)[2] for line in ledger.read_log(run_id).text.decode().splitlines()]


def test_it_stores_a_line_without_its_end_once_it_waited_a_flush(ledger: Ledger) -> None:
    read, write = os.pipe()
    os.set_blocking(read, False)
    capture = OutputCapture("r-partial", ledger, {"stdout": read})
    os.write(write, b"progress 50%")
    deadline = time.monotonic() + 10
    while b"progress 50%" not in ledger.read_log("r-partial").text:  # a follower sees it while it runs
        assert time.monotonic() < deadline, "a partial line was never stored"
        capture.pump(0.2)
    os.write(write, b" done\nlast words")  # and the last line has no end at all
    os.close(write)
    capture.finish()
    assert _texts(ledger, "r-partial") == ["progress 50%", " done", "last words"]


def test_it_picks_the_last_traceback_for_the_alert(ledger: Ledger) -> None:
    out_read, out_write = os.pipe()
    err_read, err_write = os.pipe()
    capture = OutputCapture("r-tb", ledger, {"stdout": out_read, "stderr": err_read})
    os.write(err_write, b"Traceback (most recent call last):\n  old\nKeyError: 'first'\n")
    os.write(out_write, b"retrying\n")
    os.write(err_write, b"Traceback (most recent call last):\n  File x, in load\nValueError: second\n")
    for fd in (out_write, err_write):
        os.close(fd)
    capture.finish()
    assert capture.excerpt() == "Traceback (most recent call last):\n  File x, in load\nValueError: second"
    assert "retrying" in _texts(ledger, "r-tb")
