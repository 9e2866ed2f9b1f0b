"""Clock skew edge to edge: two gunicorn instances on one real PostgreSQL, one of them 45 s ahead.

The skewed instance runs under libfaketime (Debian's `faketime` package, installed by
.ci/system-deps): every process of it — arbiter, workers, keeper, supervisors — reads a wall
clock 45 s ahead, as a host whose NTP broke would. Its keeper sweeps the shared ledger every
second; leases are judged on the database's clock, so it must leave the other instance's live
run alone. Executions are counted from what the job itself writes (`tests.fleet_jobs`), in the
order it wrote them, so no clock is needed to tell whether two copies overlapped.

libfaketime 0.9.10 (Debian 12) fakes the monotonic clock too, and the test keeps it so:
with FAKETIME_DONT_FAKE_MONOTONIC=1, Python's time.sleep fails with EINVAL (its absolute
clock_nanosleep deadline is shifted). With it faked, sleeps and select/poll timeouts work, but a
lock or Event wait *with a timeout* (sem_clockwait, not intercepted) waits until woken: code
the skewed instance runs must not rely on one (the service's one timed wait, joining a batch's
output thread, ends anyway when that thread does).
"""

from __future__ import annotations

import glob
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from service.ledger import Ledger
from service.slots import parse_slot, utcnow
from tests.support.ledgers import ACCEPT_TIMEOUT, LEASE, ask
from tests.support.live import LiveService, format_slot, unique_slot
from tests.support.slack import SlackReceiver

SECRET = "clock-test-secret-0123456789abcdef0123456789abcdef"
SKEW = "+45s"
FAST = {"LEASE_SECONDS": "3", "HEARTBEAT_SECONDS": "1", "BATCH_MODULES": "tests.jobs,tests.fleet_jobs"}


def libfaketime() -> str:
    """The path of libfaketime; fails (never skips) when the package is missing."""
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))
    if not found:
        pytest.fail(
            "libfaketime not found: install Debian's faketime package (.ci/system-deps does)", pytrace=False
        )
    return found[0]


def skewed_env() -> dict[str, str]:
    """Environment that moves a process's wall clock 45 s ahead (its monotonic clock stays true)."""
    return {"LD_PRELOAD": libfaketime(), "FAKETIME": SKEW}


def overlaps(lines: list[str]) -> list[str]:
    """Start lines written while another execution of the same slot had started and not finished."""
    running: dict[str, set[str]] = {}
    found = []
    for line in lines:
        event, run_id, slot, attempt, _ = line.split()
        current = running.setdefault(slot, set())
        if event == "start":
            if current:
                found.append(line)
            current.add(f"{run_id} {attempt}")
        else:
            current.discard(f"{run_id} {attempt}")
    return found


@pytest.fixture
def pair(
    tmp_path: Path, postgres_url: str, slack: SlackReceiver
) -> Iterator[tuple[LiveService, LiveService]]:
    """Instance `clock-true` on the true clock and `clock-ahead` 45 s ahead, sharing one ledger."""
    counts = tmp_path / "counts"
    counts.mkdir()
    common = {"LEDGER_URL": postgres_url, "TRIGGER_SECRET": SECRET, "TEST_COUNTER_DIR": str(counts), **FAST}
    true = LiveService(tmp_path / "true", slack.url, workers=2, INSTANCE_ID="clock-true", **common)
    ahead = LiveService(
        tmp_path / "ahead", slack.url, workers=2, INSTANCE_ID="clock-ahead", **common, **skewed_env()
    )
    try:
        true.start()
        ahead.start()
        yield true, ahead
    finally:
        for member in (true, ahead):
            member.kill()


def store_now(ledger_url: str) -> datetime:
    """The store's own time: the database's on PostgreSQL, this host's on SQLite."""
    if not ledger_url.startswith("postgresql"):
        return utcnow()
    with psycopg.connect(ledger_url) as conn:
        row = conn.execute("SELECT statement_timestamp()").fetchone()
    assert row is not None
    moment: datetime = row[0]
    return moment


def test_it_writes_and_judges_leases_on_the_store_clock(ledger_url: str, ledger: Ledger) -> None:
    run = ledger.claim(ask(unique_slot()), utcnow()).run
    before = store_now(ledger_url)
    started = ledger.start(run.id, "i-1", None, LEASE)
    assert ledger.renew([run.id], None, LEASE) == {run.id}
    after = store_now(ledger_url)
    assert started is not None and started.heartbeat_at is not None and started.lease_until is not None
    assert before <= started.heartbeat_at <= after
    assert started.lease_until - started.heartbeat_at == LEASE  # one statement, one time
    renewed = ledger.get(run.id)
    assert renewed is not None and renewed.lease_until is not None and renewed.heartbeat_at is not None
    assert started.lease_until <= renewed.lease_until <= after + LEASE
    assert ledger.expire_leases(None, ACCEPT_TIMEOUT) == []
    # An explicit time is still honoured (the contract suite's fixed clock relies on it).
    [abandoned] = ledger.expire_leases(renewed.lease_until + timedelta(seconds=1), ACCEPT_TIMEOUT)
    assert abandoned.id == run.id and abandoned.status == "abandoned"


def test_it_runs_python_on_the_skewed_clock() -> None:
    """The preload really moves Python's wall clock (else the test below proves nothing)."""
    probe = [sys.executable, "-c", "import time; print(time.time())"]
    skewed = subprocess.run(
        probe, env={**os.environ, **skewed_env()}, capture_output=True, text=True, check=True
    )
    true = subprocess.run(probe, capture_output=True, text=True, check=True)
    assert 40 < float(skewed.stdout) - float(true.stdout) < 50


def test_it_leaves_a_live_run_alone_when_another_instance_clock_runs_ahead(
    pair: tuple[LiveService, LiveService], tmp_path: Path
) -> None:
    true, ahead = pair
    # The skewed instance itself stamps its claims 45 s ahead: its whole process tree is skewed.
    before = utcnow()
    probe = ahead.post("tally", ahead.mint("tally", unique_slot(), params={"seconds": 0.1}, lifetime=120))
    assert probe.status == 202, probe
    assert parse_slot(probe.body["created_at"]) - before > timedelta(seconds=40)
    assert ahead.wait_final(probe.body["id"])["status"] == "succeeded"

    # A run of 6 s on the true instance: two lease lengths, so the skewed keeper sweeps it often.
    slot = format_slot(unique_slot())
    claim = true.post("tally", true.mint("tally", slot, params={"seconds": 6}))
    assert claim.status == 202, claim
    run = true.wait_final(claim.body["id"], timeout=60)

    log = f"\n--- clock-ahead\n{ahead.log_text()[-3000:]}"
    assert run["status"] == "succeeded" and run["attempt"] == 1, log
    assert [r["status"] for r in true.runs("tally") if r["slot"] == slot] == ["succeeded"], log
    lines = (tmp_path / "counts" / "tally").read_text().splitlines()
    mine = [line for line in lines if line.split()[2] == slot]
    assert [line.split()[0] for line in mine] == ["start", "done"], mine
    assert overlaps(lines) == []
