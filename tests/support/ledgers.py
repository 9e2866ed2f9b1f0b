"""The ledger contract suite's fixtures and helpers: every backend, threads, processes."""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from service.ledger import ClaimRequest, Ledger, Run, Status, open_ledger

T0 = datetime(2026, 11, 22, 15, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
LEASE = timedelta(seconds=60)
ACCEPT_TIMEOUT = timedelta(minutes=10)
THREADS = 16
PROCESSES = 8


@pytest.fixture(params=["sqlite", "postgres"])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A LEDGER_URL of an empty store of each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def ledger(ledger_url: str) -> Iterator[Ledger]:
    """A ledger with its schema, as an instance opens it at start."""
    opened = open_ledger(ledger_url)
    opened.ensure_schema()
    yield opened
    opened.close()


def ask(slot: datetime = T0, job: str = "daily", **fields: Any) -> ClaimRequest:
    """A claim request with test defaults."""
    fields.setdefault("trigger", "schedule")
    fields.setdefault("instance", "i-1")
    return ClaimRequest(job=job, slot=slot, **fields)


def finished(ledger: Ledger, slot: datetime = T0, status: Status = Status.SUCCEEDED) -> Run:
    """Claim, start and finish one run of `daily` at `slot`."""
    run = ledger.claim(ask(slot), T0).run
    ledger.start(run.id, "i-1", T0, LEASE)
    ended = ledger.finish(run.id, status, T0 + timedelta(minutes=1))
    assert ended is not None
    return ended


def at_once(count: int, action: Callable[[int], Any]) -> list[Any]:
    """Run action(0..count-1) on `count` threads released together."""
    barrier = threading.Barrier(count)

    def go(index: int) -> Any:
        barrier.wait(timeout=30)
        return action(index)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(go, range(count)))


def in_processes(url: str, requests: list[ClaimRequest]) -> list[tuple[str, str]]:
    """Claim each request from its own forked process, each opening its own ledger, all at once."""
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(len(requests)), context.Queue()
    processes = [
        context.Process(target=_claim_in_child, args=(url, request, barrier, results)) for request in requests
    ]
    for process in processes:
        process.start()
    answers = [results.get(timeout=60) for _ in processes]
    for process in processes:
        process.join(timeout=30)
    assert all(process.exitcode == 0 for process in processes)
    return answers


def _claim_in_child(url: str, request: ClaimRequest, barrier: Any, results: Any) -> None:
    ledger = open_ledger(url)
    try:
        barrier.wait(timeout=30)
        claim = ledger.claim(request, T0)
        results.put((claim.outcome, claim.run.id))
    except Exception as exc:  # the parent asserts on what each child saw
        results.put(("error", repr(exc)))
    finally:
        ledger.close()
