"""Fleet mode edge to edge: PostgreSQL, three gunicorn instances and nginx round-robin on loopback.

Each test starts its own fleet on a fresh database of the session's PostgreSQL server, with
short leases, and counts executions with what the jobs themselves write (`tests.fleet_jobs`
and `tests.jobs` note every start in a directory the instances share), not with ledger rows.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import pytest

from lambda_trigger.handler import container, handler
from service.cli import client
from tests.lambda_support.lambda_env import Context, configure, load_event
from tests.support import polling
from tests.support.live import LiveService, format_slot, unique_slot
from tests.support.nginx import Nginx
from tests.support.postgres import PostgresServer
from tests.support.slack import SlackReceiver

T = TypeVar("T")
SECRET = "fleet-test-secret-0123456789abcdef0123456789abcdef"
DAILY_SLOT = "2026-11-22T15:00:00Z"  # the `time` of service/demo_events/scheduled-daily.json
LEASE_SECONDS = 3
FAST = {
    "LEASE_SECONDS": str(LEASE_SECONDS),
    "HEARTBEAT_SECONDS": "1",
    "DRAIN_NOTICE_SECONDS": "1",
    "DRAIN_GRACE_SECONDS": "30",
    "KILL_GRACE_SECONDS": "1",
}
ENDED = ("succeeded", "failed", "timed_out", "interrupted", "abandoned", "skipped")
# A first attempt that outlives the test's interest in it, and a quick recovered attempt.
LONG_FIRST = {"seconds": 60, "retry_seconds": 0.5}


class Fleet:
    """Three instances sharing one PostgreSQL ledger and one secret, behind nginx."""

    def __init__(self, root: Path, ledger_url: str, slack: SlackReceiver, **env: str) -> None:
        self.counts = root / "counts"
        self.counts.mkdir(parents=True, exist_ok=True)
        common = {
            "LEDGER_URL": ledger_url,
            "TRIGGER_SECRET": SECRET,
            "BATCH_MODULES": "tests.jobs,tests.fleet_jobs",
            "TEST_COUNTER_DIR": str(self.counts),
            **FAST,
            **env,
        }
        self.instances = [
            LiveService(root / f"fleet-{n}", slack.url, workers=3, INSTANCE_ID=f"fleet-{n}", **common)
            for n in (1, 2, 3)
        ]
        self.nginx = Nginx([address(member) for member in self.instances])
        self.url = self.nginx.url

    def start(self) -> Fleet:
        """Start the instances side by side (they migrate the schema at once), then nginx."""
        with ThreadPoolExecutor(len(self.instances)) as pool:
            list(pool.map(LiveService.start, self.instances))
        self.nginx.start()
        return self

    def close(self) -> None:
        """Kill every instance's processes and stop nginx."""
        try:
            for member in self.instances:
                member.kill()
        finally:
            self.nginx.destroy()

    def instance(self, instance_id: str) -> LiveService:
        """The instance with that INSTANCE_ID."""
        (found,) = [m for m in self.instances if m.env["INSTANCE_ID"] == instance_id]
        return found

    def others(self, instance: LiveService) -> set[str]:
        """The INSTANCE_IDs of every instance but `instance`."""
        return {m.env["INSTANCE_ID"] for m in self.instances if m is not instance}

    def mint(self, job: str, slot: str, **kwargs: Any) -> str:
        """A trigger token every instance accepts (they share the secret)."""
        return self.instances[0].mint(job, slot, **kwargs)

    def post(self, job: str, token: str, base: str | None = None) -> client.Answer:
        """POST a trigger through nginx (or to `base`, one instance's URL)."""
        return client.request("POST", f"{base or self.url}/v1/jobs/{job}/runs", token, b"{}", timeout=30)

    def start_tally(self, slot: str, params: dict[str, float]) -> tuple[dict[str, Any], LiveService]:
        """Claim `tally` for `slot` through nginx; return the run once it runs, and its instance."""
        claim = self.post("tally", self.mint("tally", slot, params=params))
        assert claim.status == 202, claim
        run = self.wait_run(claim.body["id"], "running")
        return run, self.instance(run["instance"])  # whichever instance nginx gave the claim to

    def run(self, run_id: str) -> dict[str, Any]:
        """One run, read through nginx."""
        answer = client.request("GET", f"{self.url}/v1/runs/{run_id}", self.instances[0].read_token())
        assert answer.status == 200, answer
        return answer.body

    def runs(self, job: str | None = None, slot: str | None = None) -> list[dict[str, Any]]:
        """Runs from the shared ledger (through nginx), optionally of one job and slot."""
        found = client.list_runs(self.url, self.instances[0].read_token(), job=job, limit=1000)
        return [run for run in found if slot is None or run["slot"] == slot]

    def wait_run(self, run_id: str, *statuses: str, timeout: float = 30) -> dict[str, Any]:
        """Wait until the run has one of `statuses`; return it."""
        return self.wait(
            f"run {run_id} {'/'.join(statuses)}", lambda: _when(self.run(run_id), statuses), timeout
        )

    def wait_attempt(
        self, job: str, slot: str, attempt: int, *statuses: str, timeout: float = 30
    ) -> dict[str, Any]:
        """Wait until attempt `attempt` of (job, slot) exists with one of `statuses`; return it."""

        def probe() -> dict[str, Any] | None:
            found = [r for r in self.runs(job, slot) if r["attempt"] == attempt]
            return _when(found[0], statuses) if found else None

        return self.wait(f"{job} {slot} attempt {attempt} {'/'.join(statuses)}", probe, timeout)

    def notes(self, job: str) -> list[tuple[str, str, int]]:
        """What `tests.fleet_jobs` noted for `job`: (event, run id, attempt) per line."""
        path = self.counts / job
        lines = path.read_text().splitlines() if path.exists() else []
        return [
            (event, run_id, int(attempt.split("=")[1]))
            for event, run_id, _, attempt, _ in map(str.split, lines)
        ]

    def count_executions(self, slot: str) -> int:
        """How many times `tests.jobs`' counting job ran for `slot`."""
        path = self.counts / "count"
        lines = path.read_text().splitlines() if path.exists() else []
        return sum(line.split()[1] == slot.replace("Z", "+00:00") for line in lines)

    def wait(self, what: str, probe: Callable[[], T | None], timeout: float) -> T:
        """Poll `probe` until it returns something; fail with the instances' logs after `timeout`."""
        return polling.poll(what, probe, timeout, self.log_tails)

    def log_tails(self, lines: int = 25) -> str:
        """The end of every instance's log (access lines left out) and nginx's (for failure messages)."""
        parts = []
        for member in self.instances:
            kept = [line for line in member.log_text().splitlines() if not line.startswith("127.0.0.1 - ")]
            parts += [f"--- {member.env['INSTANCE_ID']}", *kept[-lines:]]
        return "\n".join([*parts, "--- nginx", self.nginx.log()[-1500:]])


def address(instance: LiveService) -> str:
    """The host:port nginx uses for an instance (and logs as its upstream address)."""
    return f"127.0.0.1:{instance.port}"


def terminate(instance: LiveService) -> subprocess.Popen[bytes]:
    """Send SIGTERM to an instance's gunicorn arbiter (as a scale-in does); return its process."""
    assert instance.process is not None
    instance.process.send_signal(signal.SIGTERM)
    return instance.process


def _when(run: dict[str, Any], statuses: tuple[str, ...]) -> dict[str, Any] | None:
    return run if run["status"] in statuses else None


def _alerted(slack: SlackReceiver, run_id: str, status: str) -> str | None:
    # The whole message, blocks included: the run id may sit in a context block, not the text.
    said = [json.dumps(message) for message in list(slack.messages)]
    return next((text for text in said if run_id in text and status in text), None)


@pytest.fixture
def alerts() -> Iterator[SlackReceiver]:
    """A Slack stand-in of this test's own, so that every alert it holds is this test's."""
    with SlackReceiver() as receiver:
        yield receiver


@pytest.fixture
def fleet_of(tmp_path: Path, postgres_url: str, alerts: SlackReceiver) -> Iterator[Callable[..., Fleet]]:
    """Start a fleet on a fresh database with extra environment; every fleet is killed afterwards."""
    fleets: list[Fleet] = []

    def start(**env: str) -> Fleet:
        try:
            fleet = Fleet(tmp_path, postgres_url, alerts, **env)
        except FileNotFoundError as exc:  # nginx missing: a broken machine, never a skip
            pytest.fail(str(exc), pytrace=False)
        fleets.append(fleet)
        return fleet.start()

    yield start
    for fleet in fleets:
        fleet.close()


def lambda_for(monkeypatch: pytest.MonkeyPatch, fleet: Fleet, slack: SlackReceiver, **env: str) -> None:
    """A fresh Lambda container that delivers through the fleet's nginx."""
    configure(monkeypatch, APP_URL=fleet.url, TRIGGER_SECRET=SECRET, SLACK_WEBHOOK_URL=slack.url, **env)


def test_it_executes_the_daily_slot_once_for_20_lambda_deliveries_and_200_manual_duplicates(
    monkeypatch: pytest.MonkeyPatch, fleet_of: Callable[..., Fleet], alerts: SlackReceiver
) -> None:
    fleet = fleet_of()
    # The daily event goes to the shipped daily job wrapped in a counting one: its executions
    # are noted by the job itself. Attempts get room, so that a slow answer is not retried.
    lambda_for(monkeypatch, fleet, alerts, RULE_JOBS=json.dumps({"Daily": "counted-daily"}),
               ATTEMPT_TIMEOUT_SECONDS="30", DEADLINE_SECONDS="60")  # fmt: skip
    container()  # one warm container for the 20 concurrent invocations
    event = load_event("scheduled-daily")
    tokens = [fleet.mint("counted-daily", DAILY_SLOT) for _ in range(200)]
    gate = threading.Barrier(len(tokens) + 20, timeout=60)

    def deliver() -> dict[str, Any]:
        gate.wait()
        return handler(event, Context(remaining_seconds=90))

    def post(token: str) -> client.Answer:
        gate.wait()
        return fleet.post("counted-daily", token)

    with ThreadPoolExecutor(len(tokens) + 20) as pool:
        deliveries = [pool.submit(deliver) for _ in range(20)]
        posts = [pool.submit(post, token) for token in tokens]
        results, answers = [f.result() for f in deliveries], [f.result() for f in posts]

    assert sorted({a.status for a in answers}) in ([200, 202], [200]), Counter(a.status for a in answers)
    run_ids = {r["run_id"] for r in results} | {a.body["id"] for a in answers}
    assert len(run_ids) == 1, run_ids
    new = [r for r in results if not r["duplicate"]] + [a for a in answers if a.status == 202]
    assert len(new) == 1, f"{len(new)} deliveries started a run"
    # nginx saw every request, the Lambda's retries included: each answer, from each instance, 2xx.
    logged = fleet.wait(
        "220 answers in nginx's log",
        lambda: found if len(found := fleet.nginx.answers("/v1/jobs/")) >= 220 else None,
        timeout=10,
    )
    assert len(logged) == 220 and {a.status for a in logged} <= {200, 202}
    assert {code for a in logged for code in a.upstream_statuses} <= {"200", "202"}
    assert {addr for a in logged for addr in a.upstreams} == {address(m) for m in fleet.instances}
    (run_id,) = run_ids
    run = fleet.wait_run(run_id, *ENDED)
    assert (run["status"], run["attempt"], run["slot"]) == ("succeeded", 1, DAILY_SLOT)
    assert [r["id"] for r in fleet.runs("counted-daily")] == [run_id]
    assert fleet.notes("counted-daily") == [("start", run_id, 1), ("done", run_id, 1)]


def test_it_reruns_a_run_lost_with_its_killed_instance_once_and_leaves_an_opted_out_job_abandoned(
    fleet_of: Callable[..., Fleet], alerts: SlackReceiver
) -> None:
    fleet = fleet_of()
    slot = format_slot(unique_slot())
    lost, victim = fleet.start_tally(slot, LONG_FIRST)
    kept = fleet.post("tally-once", fleet.mint("tally-once", slot, params=LONG_FIRST), base=victim.url)
    assert kept.status == 202, kept
    fleet.wait_run(kept.body["id"], "running")
    fleet.wait(
        "both bodies to start", lambda: len(fleet.notes("tally") + fleet.notes("tally-once")) == 2 or None, 10
    )

    victim.kill()  # SIGKILL to the arbiter, workers, keeper, supervisors and batches

    # Detected by the live instances' sweeps once the lease runs out (a few heartbeats later).
    bound = LEASE_SECONDS + 10
    abandoned = fleet.wait_run(lost["id"], *ENDED, timeout=bound)
    opted_out = fleet.wait_run(kept.body["id"], *ENDED, timeout=bound)
    assert (abandoned["status"], opted_out["status"]) == ("abandoned", "abandoned")
    for run in (abandoned, opted_out):
        fleet.wait(
            f"an abandoned alert for {run['job']}", partial(_alerted, alerts, run["id"], "abandoned"), 10
        )
    second = fleet.wait_attempt("tally", slot, 2, *ENDED)
    assert second["status"] == "succeeded" and second["instance"] in fleet.others(victim)
    assert fleet.notes("tally") == [
        ("start", lost["id"], 1), ("start", second["id"], 2), ("done", second["id"], 2)
    ]  # fmt: skip
    # The sweeps that re-ran tally saw tally-once too; give a few more the chance to do wrong.
    end = time.monotonic() + 3
    while time.monotonic() < end:
        assert [r["id"] for r in fleet.runs("tally-once", slot)] == [kept.body["id"]]
        time.sleep(0.25)
    assert [r["id"] for r in fleet.runs("tally", slot)] == [second["id"], lost["id"]]
    assert fleet.notes("tally-once") == [("start", kept.body["id"], 1)]


def test_it_drains_on_sigterm_while_deliveries_go_elsewhere_and_the_batch_finishes_within_the_grace(
    monkeypatch: pytest.MonkeyPatch, fleet_of: Callable[..., Fleet], alerts: SlackReceiver
) -> None:
    fleet = fleet_of()
    slot = format_slot(unique_slot())
    run, draining = fleet.start_tally(slot, {"seconds": 6})

    process = terminate(draining)

    ready = fleet.wait(
        "/readyz 503 on the draining instance",
        lambda: a if (a := client.request("GET", f"{draining.url}/readyz")).status == 503 else None,
        timeout=3,
    )
    assert ready.body["status"] == "draining"
    lambda_for(monkeypatch, fleet, alerts)
    payloads = [{"job": "count", "slot": format_slot(unique_slot())} for _ in range(6)]
    results = [handler(payload, Context()) for payload in payloads]
    assert fleet.run(run["id"])["status"] == "running", "the deliveries must overlap the drain"
    for result in results:
        delivered = fleet.wait_run(result["run_id"], *ENDED)
        assert delivered["status"] == "succeeded" and delivered["instance"] in fleet.others(draining)
    logged = fleet.nginx.answers("/v1/jobs/count/")
    assert len(logged) == 6 and all(a.status in (200, 202) for a in logged)
    assert any(a.tried(address(draining), "503") for a in logged), "nginx never offered one to the drainer"
    assert all(fleet.count_executions(p["slot"]) == 1 for p in payloads)

    finished = fleet.wait_run(run["id"], *ENDED, timeout=30)
    assert (finished["status"], finished["instance"]) == ("succeeded", draining.env["INSTANCE_ID"])
    fleet.wait("the drained instance to exit", lambda: process.poll() is not None or None, 30)
    assert [r["id"] for r in fleet.runs("tally", slot)] == [run["id"]]
    assert fleet.notes("tally") == [("start", run["id"], 1), ("done", run["id"], 1)]


def test_it_interrupts_a_batch_past_the_drain_grace_and_recovers_it_on_another_instance(
    fleet_of: Callable[..., Fleet], alerts: SlackReceiver
) -> None:
    fleet = fleet_of(DRAIN_GRACE_SECONDS="1")
    slot = format_slot(unique_slot())
    run, draining = fleet.start_tally(slot, LONG_FIRST)

    process = terminate(draining)

    interrupted = fleet.wait_run(run["id"], *ENDED, timeout=20)
    assert interrupted["status"] == "interrupted" and "shut down" in interrupted["error"]
    fleet.wait("an interrupted alert", lambda: _alerted(alerts, run["id"], "interrupted"), 10)
    second = fleet.wait_attempt("tally", slot, 2, *ENDED)
    assert second["status"] == "succeeded" and second["instance"] in fleet.others(draining)
    fleet.wait("the drained instance to exit", lambda: process.poll() is not None or None, 30)
    assert [r["id"] for r in fleet.runs("tally", slot)] == [second["id"], run["id"]]
    assert fleet.notes("tally") == [
        ("start", run["id"], 1),
        ("start", second["id"], 2),
        ("done", second["id"], 2),
    ]


def test_it_answers_503_through_a_postgresql_outage_and_loses_or_duplicates_no_run(
    monkeypatch: pytest.MonkeyPatch,
    fleet_of: Callable[..., Fleet],
    alerts: SlackReceiver,
    postgres_server: PostgresServer,
) -> None:
    # A lease longer than the outage: the batch running across it must finish as attempt 1,
    # its outcome recorded once the database is back, not be abandoned and re-run.
    fleet = fleet_of(LEASE_SECONDS="30")
    lambda_for(
        monkeypatch, fleet, alerts, RULE_JOBS=json.dumps({"Daily": "counted-daily"}), DEADLINE_SECONDS="60"
    )
    accepted = [handler(load_event("scheduled-daily"), Context(remaining_seconds=90))["run_id"]]
    # The daily job reads the ledger itself: let it end before the database goes away.
    assert fleet.wait_run(accepted[0], *ENDED)["status"] == "succeeded"
    in_flight = fleet.post("tally", fleet.mint("tally", format_slot(unique_slot()), params={"seconds": 2}))
    assert in_flight.status == 202, in_flight
    accepted.append(fleet.wait_run(in_flight.body["id"], "running")["id"])
    refused_slot = format_slot(unique_slot())

    postgres_server.stop()
    try:
        refused = fleet.post("count", fleet.mint("count", refused_slot))
        assert (refused.status, refused.body["error"]) == (503, "ledger_unavailable"), refused
        assert refused.headers.get("Retry-After")
        for member in fleet.instances:
            direct = fleet.post("count", fleet.mint("count", refused_slot), base=member.url)
            assert (direct.status, direct.body["error"]) == (503, "ledger_unavailable"), direct
            ready = client.request("GET", f"{member.url}/readyz")
            assert (ready.status, ready.body["status"]) == (503, "ledger_unavailable")
        # The Lambda keeps retrying through the outage: start it, and let it meet a 503 first.
        with ThreadPoolExecutor(1) as pool:
            retried = pool.submit(handler, {"job": "count", "slot": format_slot(unique_slot())}, Context(90))
            fleet.wait(
                "the Lambda to meet the outage",
                lambda: sum(a.status == 503 for a in fleet.nginx.answers("/v1/jobs/count/")) >= 2 or None,
                timeout=10,
            )
            # And let the batch end inside the outage: its outcome must wait for the database.
            fleet.wait("the batch to finish", lambda: len(fleet.notes("tally")) == 2 or None, timeout=10)
            postgres_server.start()
            result = retried.result()
    finally:
        postgres_server.start()  # whatever happened, later tests need the server
    assert result["attempts"] >= 2 and result["duplicate"] is False
    accepted.append(result["run_id"])
    # Back: the next delivery to each instance succeeds, and so does the one refused before.
    for member in fleet.instances:
        again = fleet.post("count", fleet.mint("count", format_slot(unique_slot())), base=member.url)
        assert again.status == 202, (member.env["INSTANCE_ID"], again)
        accepted.append(again.body["id"])
    redelivered = fleet.post("count", fleet.mint("count", refused_slot))
    assert redelivered.status == 202, redelivered
    accepted.append(redelivered.body["id"])

    for run_id in accepted:
        assert fleet.wait_run(run_id, *ENDED)["status"] == "succeeded"
    ledger = fleet.runs()
    assert sorted(r["id"] for r in ledger) == sorted(accepted), "a run was lost, or one appeared unasked"
    assert Counter((r["job"], r["slot"]) for r in ledger).most_common(1)[0][1] == 1
    assert {r["attempt"] for r in ledger} == {1}
    assert fleet.notes("tally") == [("start", in_flight.body["id"], 1), ("done", in_flight.body["id"], 1)]
    assert all(fleet.count_executions(r["slot"]) == 1 for r in ledger if r["job"] == "count")
    assert fleet.count_executions(refused_slot) == 1
    # Never a 500: not to a client, and not from any instance behind nginx.
    logged = fleet.nginx.answers()
    assert {a.status for a in logged} <= {200, 202, 503}, Counter(a.status for a in logged)
    assert {code for a in logged for code in a.upstream_statuses} <= {"200", "202", "503"}
