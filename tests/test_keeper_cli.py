"""`batch-trigger keeper` as a sidecar process: a lost run is abandoned, alerted and re-run once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

from service.ledger import ClaimRequest, Status, open_ledger
from service.slots import utcnow
from tests.support.live import REPO, unique_slot
from tests.support.slack import SlackReceiver

VENV_BIN = Path(sys.executable).parent


def test_it_recovers_a_lost_run_and_stops_on_sigterm(tmp_path: Path, slack: SlackReceiver) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    ledger = open_ledger(url)
    ledger.ensure_schema()
    long_ago = utcnow() - timedelta(minutes=5)
    lost = ledger.claim(ClaimRequest("count", unique_slot(), "schedule", "gone-1"), long_ago).run
    ledger.start(lost.id, "gone-1", long_ago, timedelta(seconds=30))  # its lease ran out long ago
    before = len(slack.messages)
    env = {
        "PATH": f"{VENV_BIN}:/usr/bin:/bin",
        "PYTHONPATH": str(REPO),
        "LEDGER_URL": url,
        "TRIGGER_SECRET": "k" * 40,
        "BATCH_MODULES": "tests.jobs",
        "TEST_COUNTER_DIR": str(tmp_path),
        "INSTANCE_ID": "sidecar-1",
        "HEARTBEAT_SECONDS": "1",
        "LEASE_SECONDS": "5",
        "RUN_DIR": str(tmp_path / "run"),
        "SLACK_WEBHOOK_URL": slack.url,
    }
    keeper = subprocess.Popen(
        [str(VENV_BIN / "batch-trigger"), "keeper"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            attempts = {run.attempt: run for run in ledger.runs(job="count", slot=lost.slot)}
            if attempts.get(2) and attempts[2].status == Status.SUCCEEDED:
                break
            time.sleep(0.2)
        assert attempts[1].status == Status.ABANDONED and "gone-1" in (attempts[1].error or "")
        assert attempts[2].status == Status.SUCCEEDED and attempts[2].instance == "sidecar-1"
        assert (tmp_path / "count").read_text().count(attempts[2].id) == 1
        assert any("abandoned" in m["text"] for m in slack.wait_for(before + 1)[before:])
        keeper.send_signal(signal.SIGTERM)
        assert keeper.wait(10) == 0
    finally:
        if keeper.poll() is None:
            os.killpg(keeper.pid, signal.SIGKILL)
            keeper.wait(10)
    assert keeper.stderr is not None
    assert all(line.startswith("{") for line in keeper.stderr.read().splitlines() if line.strip())
