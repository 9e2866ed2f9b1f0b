"""Faults on a fleet with the default lease: three instances on PostgreSQL behind nginx.

The default LEASE_SECONDS (60) and HEARTBEAT_SECONDS (15): a dead instance must be noticed by
its launcher's database session ending (seconds), not by its lease (a minute); a database
stop shorter than the lease must abandon and double nothing. Judged by the job's own records
(`tests.fault_jobs`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from service.cli import client
from service.ops.keeper import COUNT_EVERY
from tests.fault_jobs import completed, executions, overlaps
from tests.support.live import format_slot, unique_slot
from tests.support.postgres import PostgresServer
from tests.test_fleet import ENDED, Fleet, alerts, fleet_of

__all__ = ["alerts", "fleet_of"]  # the fixtures these tests use, from the fleet tests
DEFAULT_LEASE = {
    "LEASE_SECONDS": "60",
    "HEARTBEAT_SECONDS": "15",
    "BATCH_MODULES": "tests.jobs,tests.fault_jobs",
}


def start_stints(fleet: Fleet, count: int, **params: float) -> list[str]:
    """Claim `count` slots of `stint` through nginx; their slots, once every body has begun."""
    slots = [format_slot(unique_slot()) for _ in range(count)]
    for slot in slots:
        answer = fleet.post("stint", fleet.mint("stint", slot, params=params))
        assert answer.status == 202, answer
    fleet.wait(
        "every body to begin",
        lambda: True if {e.slot for e in executions(fleet.counts)} >= set(slots) else None,
        30,
    )
    # The keepers judge only instances they saw holding their launcher lock with a run going:
    # give them one look (a fleet in production has run for longer than this).
    time.sleep(COUNT_EVERY + 1)
    return slots


def test_it_starts_the_next_attempt_elsewhere_within_15_s_of_a_kill_on_the_default_lease(
    fleet_of: Callable[..., Fleet],
) -> None:
    fleet = fleet_of(**DEFAULT_LEASE)
    (slot,) = start_stints(fleet, 1, seconds=300, retry_seconds=1)
    (first,) = fleet.runs("stint", slot)
    victim = fleet.instance(first["instance"])

    killed = time.monotonic()
    victim.kill()  # SIGKILL to every process of the instance: arbiter, workers, keeper, launcher, batch

    second = fleet.wait_attempt("stint", slot, 2, "running", *ENDED, timeout=15 - (time.monotonic() - killed))
    assert second["instance"] in fleet.others(victim)
    assert fleet.run(first["id"])["status"] == "abandoned"
    assert fleet.wait_run(second["id"], *ENDED)["status"] == "succeeded"
    found = executions(fleet.counts)
    assert overlaps(found) == [] and slot in completed(found)


def test_it_abandons_and_doubles_nothing_through_a_20_s_postgresql_stop_on_the_default_lease(
    fleet_of: Callable[..., Fleet], postgres_server: PostgresServer
) -> None:
    fleet = fleet_of(**DEFAULT_LEASE)
    slots = start_stints(fleet, 3, seconds=30)
    assert len({r["instance"] for r in fleet.runs("stint")}) > 1, "round robin spreads the claims"

    postgres_server.stop()  # every session ends: every launcher lock is free
    try:
        time.sleep(20)  # the outage lasts 20 s
    finally:
        postgres_server.start()

    for slot in slots:
        (run,) = fleet.runs("stint", slot)
        assert fleet.wait_run(run["id"], *ENDED, timeout=60)["status"] == "succeeded"
    time.sleep(COUNT_EVERY + 1)  # a few liveness checks more, to let them do wrong
    assert sorted((r["slot"], r["attempt"], r["status"]) for r in fleet.runs("stint")) == sorted(
        (slot, 1, "succeeded") for slot in slots
    )
    found = executions(fleet.counts)
    assert overlaps(found) == [] and completed(found) == set(slots)
    assert sorted(e.slot for e in found) == sorted(slots), "each slot executed once"


def test_it_falls_back_to_the_lease_for_a_frozen_instance_whose_session_stays_open(
    fleet_of: Callable[..., Fleet],
) -> None:
    # A frozen VM, or a host cut off without closing its connections: the server keeps its
    # session, so its launcher lock stays held and only the lease can tell (short here: 6 s).
    fleet = fleet_of(LEASE_SECONDS="6", HEARTBEAT_SECONDS="1", BATCH_MODULES=DEFAULT_LEASE["BATCH_MODULES"])
    (slot,) = start_stints(fleet, 1, seconds=300, retry_seconds=1)
    (first,) = fleet.runs("stint", slot)
    frozen = fleet.instance(first["instance"])
    members = frozen.members()
    for pid in members:
        os.kill(pid, signal.SIGSTOP)
    live = next(m for m in fleet.instances if m is not frozen)  # nginx would wait on the frozen one

    def attempt(number: int) -> dict[str, Any] | None:
        runs = client.list_runs(live.url, live.read_token(), job="stint", limit=100)
        found = [r for r in runs if r["slot"] == slot and r["attempt"] == number]
        return found[0] if found and found[0]["status"] in ENDED else None

    try:
        second = fleet.wait("attempt 2 to end", lambda: attempt(2), 60)
        assert second["status"] == "succeeded" and second["instance"] in fleet.others(frozen)
        lost = attempt(1)
        assert lost is not None and "stopped renewing it" in lost["error"]  # the lease, not the lock
    finally:
        for pid in members:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
    # Thawed, the first attempt's batch meets its fence (the timer fired while it was frozen).
    fleet.wait("the frozen batch to end", lambda: not _alive(members) or None, 30)
    found = executions(fleet.counts)
    assert overlaps(found) == [] and slot in completed(found)
    assert [e.done for e in found if e.attempt == 1] == [False]


def _alive(pids: list[int]) -> bool:
    """True while one of the frozen instance's batch processes (`stint`) still runs."""
    for pid in pids:
        with contextlib.suppress(OSError):
            if b"service.runs.launcher" not in Path(f"/proc/{pid}/cmdline").read_bytes() and _is_batch(pid):
                return True
    return False


def _is_batch(pid: int) -> bool:
    # A batch leads its own process group (the launcher makes it so); nothing else of the instance does.
    with contextlib.suppress(OSError):
        return os.getpgid(pid) == pid and os.getsid(pid) != pid and Path(f"/proc/{pid}").exists()
    return False
