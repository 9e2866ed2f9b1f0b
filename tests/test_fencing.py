"""The fence in real processes: a batch ends itself at its deadline unless its launcher renews it.

Each test forks a stand-in batch (its own process group, as the launcher makes it) that arms a
fence and then ignores everything: only the fence may stop it.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import time
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from service.jobs import JobContext, RunCancelled
from service.ledger import open_ledger
from service.runs.fencing import Fence, FenceWriter, deadline, margin


def _batch(until: float, hold_gil: bool = False) -> tuple[int, FenceWriter]:
    """Fork a process that arms a fence until `until` and then runs (or spins in C) forever."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.setpgid(0, 0)
            os.close(write_fd)
            Fence(read_fd, until).arm()
            while True:
                if hold_gil:
                    sum(range(10**9))  # one long C call: the fence's thread gets no GIL meanwhile
                time.sleep(0.05)
        finally:
            os._exit(0)
    os.close(read_fd)
    return pid, FenceWriter(write_fd)


def _ended(pid: int, timeout: float) -> int | None:
    """The exit code (negative: the signal) once the process ended within `timeout`, else None."""
    pidfd = os.pidfd_open(pid)
    try:
        ready, _, _ = select.select([pidfd], [], [], timeout)
    finally:
        os.close(pidfd)
    if not ready:
        return None
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def test_it_stops_a_batch_at_its_deadline_when_nobody_renews_it() -> None:
    pid, fence = _batch(time.monotonic() + 0.5)
    try:
        assert _ended(pid, 0.2) is None
        assert _ended(pid, 10) in (-signal.SIGKILL, -signal.SIGALRM)
    finally:
        fence.close()


def test_it_keeps_a_renewed_batch_running_and_stops_it_when_the_run_is_lost() -> None:
    pid, fence = _batch(time.monotonic() + 0.5)
    try:
        end = time.monotonic() + 1.5
        while time.monotonic() < end:  # the launcher's heartbeats, every 0.1 s
            fence.extend(time.monotonic() + 0.5)
            assert _ended(pid, 0.1) is None
        fence.revoke()
        assert _ended(pid, 10) == -signal.SIGKILL
    finally:
        fence.close()


def test_it_stops_a_batch_whose_launcher_is_gone() -> None:
    pid, fence = _batch(time.monotonic() + 60)
    fence.close()  # the launcher died: its end of the pipe closed
    assert _ended(pid, 10) == -signal.SIGKILL


def test_it_stops_a_batch_stuck_in_c_code_by_the_kernel_timer() -> None:
    pid, fence = _batch(time.monotonic() + 0.5, hold_gil=True)
    try:
        assert _ended(pid, 10) in (-signal.SIGALRM, -signal.SIGKILL)
    finally:
        fence.close()


def test_it_leaves_a_margin_before_the_lease_ends() -> None:
    assert margin(60) == 5 and margin(3) == 1
    assert deadline(100.0, 60) == 155.0


def test_it_makes_ctx_heartbeat_raise_once_the_run_is_no_longer_ours(tmp_path: Path) -> None:
    read_fd, write_fd = os.pipe()
    fence = Fence(read_fd, time.monotonic() + 60)
    ctx = JobContext(
        run_id="r1",
        job="daily",
        slot=datetime(2026, 11, 22, 15, tzinfo=UTC),
        logical_date=date(2026, 11, 23),
        attempt=1,
        params={},
        logger=logging.LoggerAdapter(logging.getLogger("test"), {}),
        timezone=ZoneInfo("UTC"),
        ledger=open_ledger(f"sqlite:///{tmp_path / 'l.db'}"),
        artefact_dir=tmp_path,
        still_ours=fence.still_ours,
    )
    try:
        ctx.heartbeat()  # renewed: ours
        fence.lost = True  # what the watching thread sets when the launcher revokes the run
        with pytest.raises(RunCancelled, match="no longer ours"):
            ctx.heartbeat()
        fence.lost, fence.until = False, time.monotonic() - 1  # the deadline passed unrenewed
        with pytest.raises(RunCancelled, match="no longer ours"):
            ctx.heartbeat()
    finally:
        os.close(read_fd)
        os.close(write_fd)
