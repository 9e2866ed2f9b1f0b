"""The runner under gunicorn: batches run isolated, once, and end recorded whatever they do."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from service.cli import client
from tests.support.live import LiveService, launcher_pid, unique_slot
from tests.support.slack import SlackReceiver


def _health_while(service: LiveService, stop: threading.Event, seen: list[int]) -> None:
    while not stop.is_set():
        try:
            seen.append(client.request("GET", f"{service.url}/healthz", timeout=2).status)
        except OSError:
            seen.append(0)
        time.sleep(0.05)


def test_it_starts_exactly_one_execution_for_50_concurrent_deliveries(service: LiveService) -> None:
    slot = unique_slot()
    tokens = [service.mint("count", slot, params={"seconds": 0.5}) for _ in range(50)]
    with ThreadPoolExecutor(max_workers=50) as pool:
        answers = list(pool.map(lambda t: service.post("count", t), tokens))
    statuses = sorted(a.status for a in answers)
    assert statuses.count(202) == 1 and statuses.count(200) == 49, statuses
    assert len({a.body["id"] for a in answers}) == 1
    assert all(a.body["duplicate"] for a in answers if a.status == 200)
    service.wait_final(answers[0].body["id"])
    run_id = answers[0].body["id"]
    assert [line.split()[0] for line in service.executions("count") if line.startswith(run_id)] == [run_id]


def test_it_ends_raising_hanging_and_crashing_jobs_while_healthz_answers(
    service: LiveService, slack: SlackReceiver
) -> None:
    stop, seen = threading.Event(), []
    watcher = threading.Thread(target=_health_while, args=(service, stop, seen))
    watcher.start()
    try:
        ids = {job: service.post(job, service.mint(job)).body["id"] for job in ("boom", "hang", "crash")}
        runs = {job: service.wait_final(run_id) for job, run_id in ids.items()}
    finally:
        stop.set()
        watcher.join()
    assert runs["boom"]["status"] == "failed"
    assert runs["boom"]["error"] == "ValueError: boom: row 42 has no customer id"
    assert runs["hang"]["status"] == "timed_out" and "timeout of 1 s" in runs["hang"]["error"]
    assert (
        runs["crash"]["status"] == "failed" and runs["crash"]["error"] == "batch process exited with status 3"
    )
    assert seen and set(seen) == {200}, "healthz must answer throughout"
    messages = {m["text"].split("`")[1]: m for m in slack.wait_for(3) if "`" in m["text"]}
    for job, run_id in ids.items():
        blocks = json.dumps(messages[job]["blocks"])
        assert run_id in blocks and f"batch-trigger trigger {job} --slot" in blocks and "--force" in blocks
        assert "Slot (local)" in blocks and "Asia/Tokyo" in blocks
    assert "no customer id" in json.dumps(messages["boom"]["blocks"])


def test_it_answers_at_once_while_the_batch_runs(service: LiveService) -> None:
    started = time.monotonic()
    answer = service.post("count", service.mint("count", params={"seconds": 2}))
    assert answer.status == 202 and time.monotonic() - started < 1.5
    assert service.get(f"/v1/runs/{answer.body['id']}").body["status"] in ("accepted", "running")
    assert service.wait_final(answer.body["id"])["status"] == "succeeded"


def test_it_finishes_the_run_when_the_web_worker_that_started_it_is_killed(service: LiveService) -> None:
    answer = service.post("count", service.mint("count", params={"seconds": 1.5}))
    run = service.get(f"/v1/runs/{answer.body['id']}").body
    assert run["status"] in ("accepted", "running")
    assert service.process is not None
    for worker in _web_workers(service):  # every web worker, whichever served it
        os.kill(worker, signal.SIGKILL)
    time.sleep(1)  # the arbiter starts fresh workers
    assert service.wait_final(answer.body["id"])["status"] == "succeeded"
    assert client.request("GET", f"{service.url}/healthz").status == 200


def test_it_runs_the_batch_at_lower_cpu_priority(service: LiveService) -> None:
    answer = service.post("count", service.mint("count", params={"seconds": 1}))
    time.sleep(0.5)
    nices = [_nice(pid) for pid in service.members()]
    assert service.settings.batch_nice == 10 and 10 in nices
    service.wait_final(answer.body["id"])


def test_it_keeps_secrets_out_of_answers_logs_and_alerts(service: LiveService, slack: SlackReceiver) -> None:
    service.post("boom", service.mint("boom"))
    answer = service.post("count", "Bearer-garbage")
    time.sleep(1)
    everything = service.log_text() + str(slack.messages) + str(answer.body)
    assert service.secret not in everything
    assert "eyJ" not in service.log_text()


def _children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _web_workers(service: LiveService) -> list[int]:
    """The arbiter's children but the launcher (the keeper is a forked arbiter, killed too)."""
    assert service.process is not None
    return [pid for pid in _children(service.process.pid) if pid != launcher_pid(service)]


def _nice(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])
    except (OSError, IndexError, ValueError):
        return 0
