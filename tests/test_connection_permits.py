"""The connection permits behind the budget (service.ledger.budget), between real processes:
exclusive, given back by the kernel when a holder dies, never kept by a forked child, and a
waiter is seen by the holders (so web workers let go) and told plainly when none comes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.config import Settings
from service.errors import ConfigError, LedgerUnavailable
from service.ledger.budget import PERMITS_ENV, SLOW_WAIT_SECONDS, ConnectionBudget, for_instance
from tests.support.polling import poll

HOLD = """
import sys, time
from pathlib import Path
from service.ledger.budget import ConnectionBudget
permit = ConnectionBudget(Path(sys.argv[1]), int(sys.argv[2]), wait=float(sys.argv[3])).acquire()
print("held", flush=True)
time.sleep(120)
"""


@pytest.fixture
def holders() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        process.kill()
        process.wait(10)


def hold(
    holders: list[subprocess.Popen[str]], directory: Path, permits: int, wait: float = 5
) -> subprocess.Popen[str]:
    """A process that takes a permit and keeps it (it has once it printed `held`)."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(directory), str(permits), str(wait)],
        stdout=subprocess.PIPE,
        text=True,
    )
    holders.append(process)
    return process


def wait_held(process: subprocess.Popen[str]) -> None:
    assert process.stdout is not None and process.stdout.readline().strip() == "held"


def test_permits_are_exclusive_and_a_process_that_finds_none_is_told_why(
    tmp_path: Path, holders: list[subprocess.Popen[str]]
) -> None:
    for _ in range(2):
        wait_held(hold(holders, tmp_path, 2))
    with pytest.raises(LedgerUnavailable) as refused:
        ConnectionBudget(tmp_path, 2, wait=0.3).acquire()
    assert "all 2 of this instance's ledger connections" in refused.value.message
    assert PERMITS_ENV in refused.value.message


def test_a_dead_holders_permit_is_free_again(tmp_path: Path, holders: list[subprocess.Popen[str]]) -> None:
    victim = hold(holders, tmp_path, 1)
    wait_held(victim)
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    ConnectionBudget(tmp_path, 1, wait=5).acquire().release()


def test_a_waiting_process_is_seen_by_the_holders_until_it_has_its_permit(
    tmp_path: Path, holders: list[subprocess.Popen[str]]
) -> None:
    budget = ConnectionBudget(tmp_path, 1, wait=5)
    permit = budget.acquire()
    assert not budget.wanted()
    waiter = hold(holders, tmp_path, 1, wait=60)
    poll("the waiter to be seen", lambda: budget.wanted() or None, 20)
    permit.release()  # what a web worker does when it sees one
    wait_held(waiter)
    assert not budget.wanted()


def test_a_long_wait_for_a_permit_is_logged(
    tmp_path: Path, holders: list[subprocess.Popen[str]], caplog: pytest.LogCaptureFixture
) -> None:
    holder = hold(holders, tmp_path, 1)
    wait_held(holder)
    threading.Timer(SLOW_WAIT_SECONDS + 0.5, holder.kill).start()  # its permit goes back with it
    with caplog.at_level("WARNING", logger="batch_trigger.ledger"):
        ConnectionBudget(tmp_path, 1, wait=30).acquire().release()
    assert "for a ledger connection permit (LEDGER_CONNECTION_PERMITS)" in caplog.text


def test_a_forked_child_does_not_keep_its_parents_permit(tmp_path: Path) -> None:
    budget = ConnectionBudget(tmp_path, 1, wait=5)
    permit = budget.acquire()
    child = os.fork()
    if child == 0:  # no exec: the descriptor would close on exec anyway (O_CLOEXEC)
        try:
            time.sleep(30)
        finally:
            os._exit(0)
    try:
        permit.release()
        ConnectionBudget(tmp_path, 1, wait=5).acquire().release()  # free while the child lives
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)


def test_the_budget_is_read_from_the_environment_and_bad_values_are_refused(tmp_path: Path) -> None:
    base = {"TRIGGER_SECRET": "s" * 32}
    assert Settings.from_env(base).connection_permits == 0
    assert for_instance(tmp_path, 0) is None  # no budget: each process connects as it needs
    permits = Settings.from_env({**base, PERMITS_ENV: " 4 "}).connection_permits
    budget = for_instance(tmp_path, permits)
    assert budget is not None and budget.permits == 4 and budget.directory == tmp_path / "connections"
    for bad in ("four", "-1", "100000"):
        with pytest.raises(ConfigError, match=PERMITS_ENV):
            Settings.from_env({**base, PERMITS_ENV: bad})
