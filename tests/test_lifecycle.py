"""Instance lifecycle under gunicorn: readiness, drain on SIGTERM, ledger outage, bad config."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from service.cli import client
from tests.support.live import LiveService
from tests.support.startup import SECRET, refused_at_start


def test_it_reports_ready_and_healthy(service: LiveService) -> None:
    assert client.request("GET", f"{service.url}/healthz").status == 200
    ready = client.request("GET", f"{service.url}/readyz")
    assert ready.status == 200 and ready.body["instance"] == "test-1"


def test_it_drains_on_sigterm_answering_503_until_the_listener_closes(tmp_path: Path) -> None:
    with LiveService(tmp_path, DRAIN_NOTICE_SECONDS="3") as service:
        assert service.process is not None
        service.process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        ready = client.request("GET", f"{service.url}/readyz")
        claim = service.post("count", service.mint("count"))
        assert ready.status == 503 and ready.body["status"] == "draining"
        assert (claim.status, claim.body["error"]) == (503, "draining")
        assert claim.headers["Retry-After"] == "1"
        assert service.runs() == []  # nothing was claimed
        service.process.wait(15)
        with pytest.raises(OSError):
            client.request("GET", f"{service.url}/healthz", timeout=2)


def test_it_answers_503_ledger_unavailable_when_the_ledger_cannot_open(tmp_path: Path) -> None:
    (tmp_path / "not-a-dir").write_text("a file where the ledger's directory should be")
    with LiveService(tmp_path, LEDGER_URL=f"sqlite:///{tmp_path / 'not-a-dir' / 'ledger.db'}") as service:
        claim = service.post("count", service.mint("count"))
        assert (claim.status, claim.body["error"]) == (503, "ledger_unavailable")
        assert claim.headers["Retry-After"] == "2"
        ready = client.request("GET", f"{service.url}/readyz")
        assert ready.status == 503 and ready.body["status"] == "ledger_unavailable"
        assert client.request("GET", f"{service.url}/healthz").status == 200


BAD_CONFIG = {
    "missing secret": ({"TRIGGER_SECRET": ""}, "no trigger key"),
    "short secret": ({"TRIGGER_SECRET": "short"}, "TRIGGER_SECRET is too short"),
    "unknown ledger scheme": ({"LEDGER_URL": "mysql://db/x"}, "LEDGER_URL scheme 'mysql'"),
    "bad time zone": ({"BATCH_TIMEZONE": "Mars/Olympus"}, "BATCH_TIMEZONE 'Mars/Olympus'"),
    "module that does not import": ({"BATCH_MODULES": "no_such_module"}, "cannot import 'no_such_module'"),
    "heartbeat not under the lease": (
        {"HEARTBEAT_SECONDS": "60", "LEASE_SECONDS": "30"},
        "HEARTBEAT_SECONDS",
    ),
    "bad algorithm": ({"TRIGGER_ALGORITHMS": "HS256,none"}, "TRIGGER_ALGORITHMS"),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIG))
def test_it_refuses_to_start_with_one_clear_line_on_bad_configuration(tmp_path: Path, case: str) -> None:
    overrides, expected = BAD_CONFIG[case]
    line = refused_at_start(tmp_path, **overrides)
    assert expected in line
    assert SECRET not in line
