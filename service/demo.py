"""`batch-trigger demo`: the whole flow on this machine, on the embedded SQLite ledger."""

from __future__ import annotations

import json
import secrets
import tempfile
import time
from pathlib import Path

from service import client
from service.auth import mint_token
from service.config import Settings
from service.devserver import ServiceProcess
from service.slack_receiver import SlackReceiver
from service.slots import parse_slot

DAILY_SLOT = "2026-11-22T15:00:00Z"  # 15:00 UTC is midnight in Asia/Tokyo: the 2026-11-23 run


def run_demo() -> int:
    """Start gunicorn on SQLite, deliver one slot three times plus a forged token; show the ledger."""
    with tempfile.TemporaryDirectory(prefix="batch-trigger-demo-") as tmp, SlackReceiver() as slack:
        work = Path(tmp)
        env = {
            "LEDGER_URL": f"sqlite:///{work / 'ledger.db'}",
            "TRIGGER_SECRET": secrets.token_urlsafe(32),
            "BATCH_TIMEZONE": "Asia/Tokyo",
            "ARTEFACT_DIR": str(work / "artefacts"),
            "SLACK_WEBHOOK_URL": slack.url,
            "INSTANCE_ID": "demo-1",
        }
        settings = Settings.from_env(env)
        _say(f"starting the service under gunicorn (2 workers), ledger {work / 'ledger.db'}")
        with ServiceProcess(env, workers=2, log_path=work / "service.log") as service:
            _say(f"service ready at {service.url}")
            slot = parse_slot(DAILY_SLOT)
            _say(f"delivering the daily firing of {DAILY_SLOT} three times (at-least-once delivery)")
            run_id = None
            for n in (1, 2, 3):
                token = mint_token(settings, "daily", slot=slot, issuer="lambda", event_id="demo-event-1")
                answer = client.trigger(service.url, "daily", token)
                run_id = run_id or answer.body.get("id")
                _say(
                    f"  delivery {n}: HTTP {answer.status} run {answer.body.get('id')}"
                    f" {'(duplicate)' if answer.body.get('duplicate') else '(new run)'}"
                )
            forged = mint_token(
                Settings.from_env({**env, "TRIGGER_SECRET": secrets.token_urlsafe(32)}), "daily", slot=slot
            )
            answer = client.trigger(service.url, "daily", forged)
            error, message = answer.body.get("error"), answer.body.get("message")
            _say(f"  forged token: HTTP {answer.status} {error}: {message}")
            assert run_id is not None
            run = client.wait_for_run(service.url, run_id, lambda: mint_token(settings, "read"), timeout=30)
            _say(f"the run ended {run['status']} (attempt {run['attempt']}, instance {run['instance']})")
            runs = client.list_runs(service.url, mint_token(settings, "read"), job="daily")
            _say(f"the ledger holds {len(runs)} run(s) of daily for that slot: one execution")
            report = work / "artefacts" / "daily" / "2026-11-22.json"
            if report.exists():
                summary = json.loads(report.read_text())
                window = summary["window"]
                _say(f"artefact {report.name}: local day {window['start']} .. {window['end']} (UTC)")
            ok = run["status"] == "succeeded" and len(runs) == 1
        time.sleep(0.1)
        if slack.messages:
            _say(f"Slack received {len(slack.messages)} alert(s):")
            for text in slack.texts():
                _say("  " + text.replace("\n", "\n  "))
        _say("demo " + ("passed" if ok else "FAILED"))
        return 0 if ok else 1


def _say(line: str) -> None:
    print(f"[demo] {line}", flush=True)
