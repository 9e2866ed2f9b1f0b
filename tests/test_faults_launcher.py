"""The guarantee under faults of the processes that run batches, with real processes throughout.

Each test breaks something a production fleet meets (a frozen launcher, a killed launcher or
arbiter, a database outage, a threaded web server under a burst) and then judges only by what
the job recorded itself (`tests.fault_jobs`): no two executions of a slot overlapped, and every
slot ran to its end.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest

from service.config import Settings
from service.jobs import Registry
from service.ledger import ClaimRequest, Run, open_ledger
from service.runs.claim_and_launch import ClaimAndLaunch
from service.slots import utcnow
from tests.fault_jobs import completed, executions, overlaps
from tests.support import polling
from tests.support.live import REPO, LiveService, format_slot, launcher_pid, unique_slot
from tests.support.postgres import PostgresServer

T = TypeVar("T")
JOBS = "tests.jobs,tests.fault_jobs"
# Short leases where the test is not about the default one; the margin is then 1 s.
SHORT = {"LEASE_SECONDS": "4", "HEARTBEAT_SECONDS": "1", "BATCH_MODULES": JOBS}


def poll(what: str, probe: Callable[[], T | None], timeout: float, service: LiveService | None = None) -> T:
    """Poll with a deadline; a failure shows the end of the service's log."""
    return polling.poll(what, probe, timeout, (lambda: _log_tail(service)) if service else None)


def _log_tail(service: LiveService) -> str:
    return "\n".join(service.log_text().splitlines()[-40:])


def start_stints(service: LiveService, count: int, **params: float) -> list[str]:
    """Claim `count` slots of `stint`; their slots, once every body has begun."""
    slots = [format_slot(unique_slot()) for _ in range(count)]
    for slot in slots:
        answer = service.post("stint", service.mint("stint", slot, params=params))
        assert answer.status == 202, answer
    poll(
        "every body to begin",
        lambda: True if {e.slot for e in executions(service.counter_dir)} >= set(slots) else None,
        30,
        service,
    )
    return slots


def attempts(service: LiveService, slot: str) -> dict[int, dict[str, Any]]:
    """The slot's runs by attempt, from the HTTP API."""
    return {r["attempt"]: r for r in service.runs("stint") if r["slot"] == slot}


def wait_attempt(
    service: LiveService, slot: str, attempt: int, timeout: float, status: str = ""
) -> dict[str, Any]:
    """The slot's run of `attempt` once it has `status` (by default: once it no longer runs)."""

    def ready() -> dict[str, Any] | None:
        run = attempts(service, slot).get(attempt)
        arrived = run is not None and (run["status"] == status if status else run["status"] != "running")
        return run if arrived else None

    return poll(f"attempt {attempt} to {'be ' + status if status else 'end'}", ready, timeout, service)


def assert_once_at_a_time_and_complete(directory: Path, slots: list[str]) -> None:
    """The job's own records: no two executions of a slot at once, and every slot done."""
    found = executions(directory)
    assert overlaps(found) == [], overlaps(found)
    assert completed(found) >= set(slots), found


def test_it_stops_a_batch_by_itself_when_its_launcher_is_frozen_past_the_lease(tmp_path: Path) -> None:
    with LiveService(tmp_path, **SHORT) as service:
        (slot,) = start_stints(service, 1, seconds=60, retry_seconds=1)
        launcher = launcher_pid(service)
        assert launcher is not None
        os.kill(launcher, signal.SIGSTOP)  # a long GC pause, a frozen VM
        try:
            # The keeper (another process) abandons the run past lease + margin and claims attempt 2.
            poll("attempt 2 to be claimed", lambda: attempts(service, slot).get(2), 30, service)
        finally:
            resumed = time.monotonic()
            os.kill(launcher, signal.SIGCONT)
        second = wait_attempt(service, slot, 2, 30, "succeeded")
        assert attempts(service, slot)[1]["status"] == "abandoned" and second["instance"] == "test-1"
    first = [e for e in executions(service.counter_dir) if e.attempt == 1]
    assert len(first) == 1 and not first[0].done
    assert first[0].last < resumed, "the batch must have stopped while its launcher was still frozen"
    assert_once_at_a_time_and_complete(service.counter_dir, [slot])


def test_it_starts_again_within_seconds_when_the_launcher_is_killed(tmp_path: Path) -> None:
    with LiveService(tmp_path, BATCH_MODULES=JOBS) as service:  # the default lease: 60 s
        slots = start_stints(service, 2, seconds=60, retry_seconds=1)
        launcher = launcher_pid(service)
        assert launcher is not None
        os.kill(launcher, signal.SIGKILL)
        # The arbiter starts a new launcher; it stops what the dead one left, records it
        # `interrupted` and starts the next attempt at once, long before the lease would expire.
        for slot in slots:
            poll(
                f"attempt 2 of {slot} to succeed",
                lambda slot=slot: attempts(service, slot).get(2, {}).get("status") == "succeeded" or None,
                20,
                service,
            )
            assert attempts(service, slot)[1]["status"] == "interrupted"
        assert launcher_pid(service) not in (None, launcher)
    assert_once_at_a_time_and_complete(service.counter_dir, slots)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_it_never_runs_two_copies_when_the_arbiter_is_killed_and_the_instance_comes_back(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    env = dict(SHORT)
    if backend == "postgres":
        env["LEDGER_URL"] = request.getfixturevalue("postgres_url")
    service = LiveService(tmp_path, **env).start()
    try:
        slots = start_stints(service, 3, seconds=60, retry_seconds=1)
        assert service.process is not None
        killed = time.monotonic()
        service.process.send_signal(signal.SIGKILL)  # the arbiter alone
        service.process.wait(10)
        poll("every process of the instance to end", lambda: not service.members() or None, 30, service)
        # The instance comes back about 12 s after its arbiter died (a supervisor's restart).
        time.sleep(max(0.0, 12 - (time.monotonic() - killed)))
    finally:
        service.kill()
    with LiveService(tmp_path, **env) as again:
        for slot in slots:
            poll(
                f"{slot} to complete",
                lambda slot=slot: slot in completed(executions(again.counter_dir)) or None,
                60,
                again,
            )
    assert_once_at_a_time_and_complete(tmp_path / "counts", slots)


def test_it_records_a_batch_that_ended_during_a_30_s_postgresql_stop_as_it_was(
    tmp_path: Path, postgres_url: str, postgres_server: PostgresServer
) -> None:
    # The default lease (60 s): the outage is shorter, so nothing may be abandoned or run twice.
    with LiveService(tmp_path, LEDGER_URL=postgres_url, BATCH_MODULES=JOBS, HEARTBEAT_SECONDS="5") as service:
        (slot,) = start_stints(service, 1, seconds=4)
        postgres_server.stop()
        stopped = time.monotonic()
        try:
            poll("the batch to end", lambda: slot in completed(executions(service.counter_dir)) or None, 20)
            time.sleep(max(0.0, 30 - (time.monotonic() - stopped)))  # the outage lasts 30 s
        finally:
            postgres_server.start()
        run = wait_attempt(service, slot, 1, 30)
        assert run["status"] == "succeeded", run
        time.sleep(2 * service.settings.heartbeat_seconds)  # a few sweeps more, to let them do wrong
        assert list(attempts(service, slot)) == [1]
    found = executions(service.counter_dir)
    assert [(e.slot, e.attempt, e.done) for e in found] == [(slot, 1, True)]


def test_it_takes_200_concurrent_new_claims_on_gthread_workers_without_a_500_or_a_lost_batch(
    tmp_path: Path,
) -> None:
    # What a host Flask app often runs: threads in each worker. Claims from many threads at once,
    # and no web worker forks, so no batch can inherit a lock another thread held.
    threaded = {"GUNICORN_CMD_ARGS": "--worker-class gthread --threads 8", "BATCH_MODULES": JOBS}
    with LiveService(tmp_path, workers=2, **threaded) as service:
        assert "gthread" in service.log_text()
        tokens = [service.mint("count", unique_slot()) for _ in range(200)]
        with ThreadPoolExecutor(200) as pool:
            answers = list(pool.map(lambda token: service.post("count", token), tokens))
        assert Counter(a.status for a in answers) == {202: 200}, Counter(a.status for a in answers)
        ids = {a.body["id"] for a in answers}
        succeeded = lambda: {r["id"] for r in service.runs("count") if r["status"] == "succeeded"}  # noqa: E731
        poll("every run to end", lambda: True if succeeded() >= ids else None, 120, service)
        ran = Counter(line.split()[0] for line in service.executions("count"))
        assert set(ran) == ids and set(ran.values()) == {1}


def test_it_restarts_the_launcher_of_the_keeper_command_and_runs_what_is_handed_to_it(tmp_path: Path) -> None:
    """`batch-trigger keeper` beside another web server: the same hand-off, the same restarts."""
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "LEDGER_URL": f"sqlite:///{tmp_path / 'ledger.db'}",
        "TRIGGER_SECRET": "k" * 40,
        "BATCH_MODULES": JOBS,
        "TEST_COUNTER_DIR": str(tmp_path),
        "INSTANCE_ID": "sidecar-1",
        "RUN_DIR": str(tmp_path / "run"),
        **{k: v for k, v in SHORT.items() if k != "BATCH_MODULES"},
    }
    keeper = subprocess.Popen(
        [str(Path(sys.executable).parent / "batch-trigger"), "keeper"], env=env, start_new_session=True
    )
    settings = Settings.from_env(env)
    ledger = open_ledger(settings.ledger_url)
    ledger.ensure_schema()
    use_case = ClaimAndLaunch(ledger, Registry(), settings.instance_id, settings.run_dir)
    try:
        first = poll("the launcher to start", lambda: _launcher_of(keeper.pid), 30)
        os.kill(first, signal.SIGKILL)
        poll("a new launcher", lambda: _launcher_of(keeper.pid) not in (None, first) or None, 30)
        slot = unique_slot()
        request = ClaimRequest("stint", slot, "manual", "sidecar-1", params={"seconds": 0.2})
        claim = use_case.claim(request, utcnow())
        assert claim.outcome == "new"
        ended = poll("the run to end", lambda: _ended(ledger.get(claim.run.id)), 30)
        assert ended.status == "succeeded"
        keeper.send_signal(signal.SIGTERM)
        assert keeper.wait(30) == 0
    finally:
        if keeper.poll() is None:
            os.killpg(keeper.pid, signal.SIGKILL)
            keeper.wait(10)
    assert completed(executions(tmp_path)) == {format_slot(slot)}


def _ended(run: Run | None) -> Run | None:
    return run if run is not None and not run.active else None


def _launcher_of(parent: int) -> int | None:
    children = Path(f"/proc/{parent}/task/{parent}/children")
    for pid in children.read_text().split() if children.exists() else []:
        with contextlib.suppress(OSError):
            if b"service.runs.launcher" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return int(pid)
    return None


def test_it_keeps_the_flask_app_out_of_the_launchers_image() -> None:
    """What the launcher imports, in a fresh interpreter as it runs: jobs and the ledger, no web tier."""
    probe = (
        "import sys, service.runs.launcher, service.batches.daily;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('flask', 'werkzeug', 'jwt')"
        " or m.startswith('service.web')))"
    )
    command = [sys.executable, "-c", probe]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"


def test_it_stops_its_batches_when_another_session_takes_its_launcher_lock(
    tmp_path: Path, postgres_url: str
) -> None:
    """The launcher's session ends and another session holds its lock (a second process with the
    same INSTANCE_ID, or whatever a keeper elsewhere would read as this instance gone): the
    launcher stops its batches LOSS_LIMIT later, says so and why in its log, and the run ends
    `interrupted` with the reason — then, the lock back, it runs the slot's next attempt."""
    import psycopg

    from service.ledger.postgres import launcher_key

    with LiveService(tmp_path, LEDGER_URL=postgres_url, BATCH_MODULES=JOBS) as service:
        (slot,) = start_stints(service, 1, seconds=60, retry_seconds=1)
        key = launcher_key(service.settings.instance_id)
        # The lock as pg_locks shows a one-key advisory lock: classid, objid = its two halves.
        held = (
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 1"
            " AND classid = %s::oid AND objid = %s::oid AND granted = %s"
        )
        halves = ((key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF)
        with (
            psycopg.connect(postgres_url, autocommit=True) as taker,
            psycopg.connect(postgres_url, autocommit=True) as admin,
            ThreadPoolExecutor(1) as pool,
        ):
            # Queued behind the launcher's session: granted the moment that session ends, before
            # the launcher has reconnected.
            waiting = pool.submit(lambda: taker.execute("SELECT pg_advisory_lock(%s)", (key,)))
            poll("the lock request to queue", lambda: admin.execute(held, (*halves, False)).fetchone(), 10)
            (launcher_session,) = admin.execute(held, (*halves, True)).fetchone() or (None,)
            assert launcher_session is not None, "the launcher holds no lock"
            admin.execute("SELECT pg_terminate_backend(%s)", (launcher_session,))
            waiting.result(timeout=10)
            first = wait_attempt(service, slot, 1, 30)
            assert first["status"] == "interrupted", first
            assert "lost its database session" in (first["error"] or ""), first
            log = service.log_text()
            assert "launcher lock not taken back" in log and "another session holds the lock" in log
            taker.execute("SELECT pg_advisory_unlock(%s)", (key,))
        second = wait_attempt(service, slot, 2, 60, "succeeded")
        assert second["instance"] == service.settings.instance_id
    assert_once_at_a_time_and_complete(service.counter_dir, [slot])
