"""A Slack that accepts connections and never answers, edge to edge: real gunicorn, real SQLite.

Eight runs are lost (their instance, `gone-1`, stopped renewing their leases long ago) before
the instance starts, so its keeper's first sweep finds all eight. The Slack stand-in holds
every request unanswered; at the moment the first abandonment alert arrives, the test looks in
the ledger: all eight next attempts must already be claimed. A keeper that alerted before
recovering (or waited on Slack for each alert) would have claimed none by then.
"""

from __future__ import annotations

import sqlite3
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from service.ledger import ClaimRequest, open_ledger
from service.slots import utcnow
from tests.support.live import LiveService, unique_slot
from tests.support.silent_slack import SilentSlack

LOST = 8


def test_it_recovers_lost_runs_in_one_sweep_while_slack_never_answers(tmp_path: Path) -> None:
    work = tmp_path / "service"
    work.mkdir()
    ledger_path = work / "ledger.db"
    ledger = open_ledger(f"sqlite:///{ledger_path}")
    ledger.ensure_schema()
    long_ago = utcnow() - timedelta(minutes=5)
    lost = []
    for _ in range(LOST):
        run = ledger.claim(
            ClaimRequest("count", unique_slot(), "schedule", "gone-1", overlap="allow"), long_ago
        ).run
        ledger.start(run.id, "gone-1", long_ago, timedelta(seconds=30))  # its lease ran out long ago
        lost.append(run)
    ledger.close()
    slots = [run.slot.strftime("%Y-%m-%dT%H:%M:%S.%fZ") for run in lost]

    seen_at_first_alert: list[int] = []

    def next_attempts() -> int:
        with sqlite3.connect(ledger_path, timeout=30) as conn:
            found = conn.execute("SELECT slot FROM runs WHERE attempt = 2").fetchall()
        return len({slot for (slot,) in found} & set(slots))

    def look(body: dict[str, Any]) -> None:
        # The keeper's abandonment alert (the launcher's "recovered" notices may come first).
        if body.get("text", "").startswith(":ghost:") and not seen_at_first_alert:
            seen_at_first_alert.append(next_attempts())

    with SilentSlack(on_request=look) as silent:
        service = LiveService(
            work, silent.url, workers=2, HEARTBEAT_SECONDS="1", LEASE_SECONDS="3", INSTANCE_ID="slack-1"
        )
        with service:
            end = time.monotonic() + 30
            while not seen_at_first_alert and time.monotonic() < end:
                time.sleep(0.05)
            assert seen_at_first_alert == [LOST], service.log_text()[-3000:]
            # Slack answers again: the alerts held and queued go out, in the order of the sweep.
            silent.release()
            end = time.monotonic() + 60
            while time.monotonic() < end and _accounted(silent, service) < LOST:
                time.sleep(0.1)
            assert _accounted(silent, service) >= LOST, service.log_text()[-3000:]
            runs = {run["id"]: run for run in service.runs("count")}
            assert all(runs[run.id]["status"] == "abandoned" for run in lost)
            final = {r["slot"]: r["status"] for r in runs.values() if r["attempt"] == 2}
            assert len(final) == LOST and set(final.values()) <= {"accepted", "running", "succeeded"}


def _accounted(silent: SilentSlack, service: LiveService) -> int:
    """Abandonment alerts Slack took, plus alerts the instance logged as not delivered."""
    delivered = sum("abandoned" in body.get("text", "") for body in silent.answered)
    return delivered + service.log_text().count("slack alert not delivered")
