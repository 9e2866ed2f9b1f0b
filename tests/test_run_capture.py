"""Each run's output, captured by its supervisor under real gunicorn: traceback, prints, logs,
subprocesses, floods, following, a killed instance, both ledgers, and who may read it."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from service.cli import client
from service.ledger import open_ledger
from service.runs.logbound import LOG_LIMIT
from service.web.auth import mint_token
from tests.support.live import REPO, LiveService, unique_slot
from tests.support.slack import SlackReceiver

MODULES = "tests.jobs,tests.log_jobs"
LINE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (stdout|stderr) ")


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, slack: SlackReceiver) -> Iterator[LiveService]:
    """An instance with the log test jobs, on SQLite."""
    with LiveService(tmp_path_factory.mktemp("capture"), slack.url, workers=2, BATCH_MODULES=MODULES) as svc:
        yield svc


def _run(service: LiveService, job: str, **params: Any) -> str:
    answer = service.post(job, service.mint(job, params=params or None))
    assert answer.status == 202, answer.body
    return str(answer.body["id"])


def _log(service: LiveService, run_id: str) -> client.LogPage:
    return client.read_log(service.url, run_id, service.read_token())


def _alert_for(slack: SlackReceiver, run_id: str, timeout: float = 15) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for message in slack.wait_for(1, timeout=1):
            if run_id in json.dumps(message):
                return message
    raise AssertionError(f"no Slack alert mentions run {run_id}")


def _chatty_log_is_whole(service: LiveService) -> None:
    run_id = _run(service, "chatty-exit")
    run = service.wait_final(run_id)
    assert run["status"] == "failed" and run["error"] == "batch process exited with status 3"
    page = _log(service, run_id)
    assert page.ended and page.next_offset == len(page.text.encode())
    lines = page.text.splitlines()
    assert all(LINE.match(line) for line in lines), lines
    expected = [
        "stdout printed to stdout",
        "stderr INFO batch_trigger.job.chatty-exit: logged through ctx.logger"
        ' {"customer": "c-42", "rows": 3}',
        "stderr INFO tests.log_jobs: logged by a module logger",
        "stderr subprocess wrote to stderr",
        "stdout token [token] leaked",
        "stderr last words before os._exit",
    ]
    seen = [line.split(" ", 1)[1] for line in lines]
    # Each stream keeps its order; between the two pipes, the order is the order they were read.
    for stream in ("stdout", "stderr"):
        assert [x for x in seen if x.startswith(stream)] == [x for x in expected if x.startswith(stream)]
    assert sorted(seen) == sorted(expected)
    assert "eyJ" not in page.text


def test_it_keeps_the_whole_traceback_in_the_log_and_its_end_in_the_alert(
    live: LiveService, slack: SlackReceiver
) -> None:
    run_id = _run(live, "traceback")
    run = live.wait_final(run_id)
    assert run["status"] == "failed"
    assert run["error"] == "ValueError: invalid literal for int() with base 10: '<none> & co'"
    page = _log(live, run_id)
    assert page.ended
    text = page.text
    assert 'INFO batch_trigger.job.traceback: loading rows {"rows": 2}' in text
    frames = ["Traceback (most recent call last):", "in traceback_job", "in _load", "in _parse", run["error"]]
    positions = [text.find(frame) for frame in frames]
    assert -1 not in positions and positions == sorted(positions), positions
    message = _alert_for(slack, run_id)
    header = message["blocks"][0]["text"]
    assert header["type"] == "plain_text" and "`" not in header["text"] and "traceback" in header["text"]
    sections = [b["text"]["text"] for b in message["blocks"] if b["type"] == "section" and "text" in b]
    assert all(len(section) <= 3000 for section in sections)
    excerpt = next(section for section in sections if section.startswith("*Last lines of the log*"))
    assert "```" in excerpt and "in _parse" in excerpt
    assert "&lt;none&gt; &amp; co" in excerpt and "<none>" not in excerpt
    context = json.dumps(message["blocks"][-1])
    assert f"batch-trigger logs {run_id}" in context and "--force" in context
    assert f"batch-trigger logs {run_id}" in message["text"]


def test_it_captures_prints_logs_and_a_subprocess_before_os_exit(live: LiveService) -> None:
    _chatty_log_is_whole(live)


def test_it_stores_a_20_mb_output_within_the_bound_with_the_marker(live: LiveService) -> None:
    run_id = _run(live, "flood", megabytes=20)
    assert live.wait_final(run_id, timeout=90)["status"] == "succeeded"
    page = _log(live, run_id)
    head, _, rest = page.text.partition("… ")
    omitted, _, tail = rest.partition(" bytes omitted …\n")
    assert head.splitlines()[0].endswith("stdout line 000000000 " + "x" * 84)
    assert tail.splitlines()[-1].endswith("stdout the end of the flood")
    assert len(head.encode()) + int(omitted) + len(tail.encode()) == page.next_offset > 20_000_000
    with sqlite3.connect(live.ledger_path) as db:
        stored_sql = "SELECT sum(length(chunk)) FROM run_logs WHERE run_id = ?"
        (stored,) = db.execute(stored_sql, (run_id,)).fetchone()
    assert LOG_LIMIT // 2 < stored <= LOG_LIMIT


def test_it_follows_a_running_batch_until_it_ends(live: LiveService) -> None:
    run_id = _run(live, "ticker", seconds=3)
    env = os.environ | {"BATCH_TRIGGER_URL": live.url, "TRIGGER_SECRET": live.secret, "PYTHONPATH": str(REPO)}
    follower = subprocess.Popen(
        [str(Path(sys.executable).parent / "batch-trigger"), "logs", run_id, "--follow"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert follower.stdout is not None
    first = follower.stdout.readline()
    assert first.endswith("stdout tick 0\n")
    # The first line came while the batch still ran: the follower reads a running batch.
    assert live.get(f"/v1/runs/{run_id}").body["status"] == "running"
    rest = follower.stdout.read()
    assert follower.wait(timeout=30) == 0
    assert rest.splitlines()[-1].endswith("stdout ticker done")
    assert live.get(f"/v1/runs/{run_id}").body["status"] == "succeeded"


def test_it_refuses_the_log_to_a_token_of_another_job(live: LiveService) -> None:
    run_id = _run(live, "traceback")
    live.wait_final(run_id)
    path = f"/v1/runs/{run_id}/log"
    refused = live.get(path, mint_token(live.settings, "count"))
    assert refused.status == 403 and refused.body["error"] == "job_mismatch"
    assert client.read_log(live.url, run_id, mint_token(live.settings, "traceback")).ended
    assert live.get(f"{path}?offset=-1").status == 400
    assert live.get("/v1/runs/0123456789abcdef0123456789abcdef/log").status == 404


def _ticking(service: LiveService, until: str) -> str:
    """Start a long ticker; return its run id once `until` is in the ledger."""
    run_id = _run(service, "ticker", seconds=60)
    deadline = time.monotonic() + 20
    while until not in _log(service, run_id).text:
        assert time.monotonic() < deadline, "the ticker's lines never reached the ledger"
        time.sleep(0.2)
    return run_id


def test_it_keeps_what_was_sent_when_the_instance_is_killed(tmp_path: Path) -> None:
    with LiveService(tmp_path, workers=1, BATCH_MODULES=MODULES) as svc:
        run_id = _ticking(svc, until="tick 5")
        svc.kill()
    ledger = open_ledger(f"sqlite:///{svc.ledger_path}")
    text = ledger.read_log(run_id).text.decode()
    ticks = [line.rsplit(" ", 1)[1] for line in text.splitlines()]
    assert ticks[:6] == ["0", "1", "2", "3", "4", "5"] and "ticker done" not in text


def test_it_reports_what_a_lost_run_had_sent(tmp_path: Path, slack: SlackReceiver) -> None:
    fast = {"BATCH_MODULES": MODULES, "LEASE_SECONDS": "4", "HEARTBEAT_SECONDS": "1"}
    with LiveService(tmp_path / "a", workers=1, **fast) as first:
        run_id = _ticking(first, until="tick 3")
        first.kill()
    ledger_url = f"sqlite:///{first.ledger_path}"
    # Another instance on the same ledger finds the lease expired and says what the run had written.
    with LiveService(tmp_path / "b", slack.url, workers=1, LEDGER_URL=ledger_url, INSTANCE_ID="i-2", **fast):
        alert = _alert_for(slack, run_id, timeout=45)
    assert "abandoned" in alert["blocks"][0]["text"]["text"]
    excerpt = next(b["text"]["text"] for b in alert["blocks"] if "Last lines of the log" in json.dumps(b))
    assert "stdout tick 3" not in excerpt and "tick 3" in excerpt  # the text, without time and stream


def test_it_captures_on_postgresql_too(tmp_path: Path, postgres_url: str) -> None:
    with LiveService(tmp_path, workers=1, BATCH_MODULES=MODULES, LEDGER_URL=postgres_url) as svc:
        _chatty_log_is_whole(svc)
        run_id = _run(svc, "flood", megabytes=3)
        assert svc.wait_final(run_id, timeout=60)["status"] == "succeeded"
        assert "bytes omitted" in _log(svc, run_id).text


def test_it_goes_from_the_slack_alert_to_the_traceback_with_the_readmes_lines(
    live: LiveService, slack: SlackReceiver
) -> None:
    run_id = _run(live, "traceback")
    error = live.wait_final(run_id)["error"]
    alert = _alert_for(slack, run_id)
    # The alert's own line is where a person starts.
    named = re.search(r"batch-trigger logs ([0-9a-f]{32})", alert["text"])
    assert named and named[1] == run_id
    readme = (REPO / "README.md").read_text()
    block = re.search(
        r"<!-- when-a-run-fails:.*?-->\s*```bash\n(.*?)```\s*<!-- /when-a-run-fails -->", readme, re.S
    )
    assert block, "README has no when-a-run-fails block"
    env = {
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "TRIGGER_SECRET": live.secret,
        "BATCH_TRIGGER_URL": live.url,
        "HOME": str(live.work),
        "RUN_ID": named[1],
    }
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block[1]], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert any(line.startswith(run_id) and "traceback" in line and "failed" in line for line in lines)
    assert "stderr Traceback (most recent call last):" in done.stdout
    # The log, then the HTTP read of its last two lines, both end at the exception.
    assert lines[-1].endswith(f"stderr {error}") and sum(line.endswith(error) for line in lines) >= 2


def test_it_says_once_that_a_failing_job_recovered_and_every_success_when_asked(
    live: LiveService, slack: SlackReceiver
) -> None:
    slot = unique_slot()
    failed = live.post("flaky", live.mint("flaky", slot, params={"fail": True})).body["id"]
    assert live.wait_final(failed)["status"] == "failed"
    _alert_for(slack, failed)
    again = live.post("flaky", live.mint("flaky", slot, force=True)).body["id"]
    assert live.wait_final(again)["status"] == "succeeded"
    assert _alert_for(slack, again)["blocks"][0]["text"]["text"] == (
        "batch-trigger: job flaky recovered (the previous run failed)"
    )
    quiet = _run(live, "flaky")
    assert live.wait_final(quiet)["status"] == "succeeded"
    chirp = _run(live, "chirpy")
    assert live.wait_final(chirp)["status"] == "succeeded"
    assert _alert_for(slack, chirp)["blocks"][0]["text"]["text"] == "batch-trigger: job chirpy succeeded"
    # The chirpy notice came after the quiet success: had flaky said anything again, it would be here.
    assert not any(quiet in json.dumps(message) for message in slack.messages)


def test_it_applies_log_level_to_the_batchs_loggers(tmp_path: Path) -> None:
    with LiveService(tmp_path, workers=1, BATCH_MODULES=MODULES, LOG_LEVEL="WARNING") as svc:
        run_id = _run(svc, "chatty-exit")
        svc.wait_final(run_id)
        text = _log(svc, run_id).text
    # The INFO records are below the level; print() and the subprocess's output are not log records.
    assert "logged through ctx.logger" not in text and "logged by a module logger" not in text
    assert "printed to stdout" in text and "subprocess wrote to stderr" in text
