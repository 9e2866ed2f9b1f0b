"""The SQLite ledger's disk fills up, edge to edge: real gunicorn, the ledger on a tiny tmpfs.

Mounting a tmpfs needs root (CI runs the suite as root). Elsewhere the test fails with a clear
message rather than skipping in silence, unless BATCH_TRIGGER_ALLOW_ROOT_SKIP=1 says a skip is
intended (a developer's laptop).
"""

from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from service.cli import client
from tests.support.inprocess import INSTANCE, InProcess
from tests.support.live import LiveService, format_slot, unique_slot
from tests.support.polling import poll as shared_poll

T = TypeVar("T")
ALLOW_SKIP = "BATCH_TRIGGER_ALLOW_ROOT_SKIP"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs mounted for this test, unmounted after."""
    if os.geteuid() != 0:
        message = "mounting a tmpfs for the full-disk test needs root (CI runs tests as root)"
        if os.environ.get(ALLOW_SKIP) == "1":
            pytest.skip(message)
        pytest.fail(f"{message}; set {ALLOW_SKIP}=1 to skip it on purpose", pytrace=False)
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0755", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> Path:
    """Write zeros into a file on `disk` until the filesystem is full; the file."""
    filler = disk / "filler"
    chunk = b"\0" * 65536
    with open(filler, "wb") as out:
        while True:
            try:
                out.write(chunk)
                out.flush()
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                break
    # Whatever the buffer still held was refused as well; the disk stays full.
    return filler


def poll(what: str, probe: Callable[[], T | None], service: LiveService, timeout: float = 30) -> T:
    """Poll `probe` until it returns something; fail with the service's log after `timeout`."""
    return shared_poll(what, probe, timeout, lambda: service.log_text()[-3000:])


def test_it_probes_the_ledger_with_a_write_at_most_every_few_seconds(tmp_path: Path) -> None:
    app = InProcess(tmp_path)
    assert app.get("/readyz").status_code == 200
    first = _probed_at(tmp_path / "ledger.db")
    assert first is not None  # the check wrote
    for _ in range(20):  # a load balancer's checks, in a burst: answered from the last probe
        assert app.get("/readyz").status_code == 200
    assert _probed_at(tmp_path / "ledger.db") == first


def _probed_at(path: Path) -> str | None:
    with sqlite3.connect(path) as conn:
        row = conn.execute("SELECT probed_at FROM ready_probes WHERE instance = ?", (INSTANCE,)).fetchone()
    return str(row[0]) if row else None


def test_it_answers_503_on_claims_and_readiness_while_the_ledger_disk_is_full(
    small_disk: Path, tmp_path: Path
) -> None:
    service = LiveService(tmp_path / "service", workers=2, LEDGER_URL=f"sqlite:///{small_disk / 'ledger.db'}")
    with service:
        assert service.get("/readyz").status == 200
        claim = service.post("count", service.mint("count", params={"seconds": 2}))
        assert claim.status == 202, claim
        in_flight = claim.body
        filler = fill(small_disk)
        refused: list[str] = []

        def claim_refused() -> client.Answer | None:
            slot = unique_slot()
            answer = service.post("count", service.mint("count", slot))
            if answer.status == 503:
                refused.append(format_slot(slot))
                return answer
            return None

        answer = poll("a claim answered 503", claim_refused, service)
        assert answer.body["error"] == "ledger_unavailable" and answer.headers.get("Retry-After"), answer
        ready = poll("/readyz answering 503", lambda: _with(service.get("/readyz"), 503), service)
        assert ready.body["status"] == "ledger_unavailable", ready

        filler.unlink()
        poll("/readyz answering 200 again", lambda: _with(service.get("/readyz"), 200), service)
        for slot in refused:  # the triggers' retries, once the disk has room again
            retried = service.post("count", service.mint("count", slot))
            assert retried.status == 202, retried
        for run in [in_flight, *(r for r in service.runs("count") if r["slot"] in refused)]:
            assert service.wait_final(run["id"])["status"] == "succeeded"
        # The job's own records: each slot ran exactly once, the one in flight during the outage too.
        slots = [line.split()[1] for line in service.executions("count")]
        assert sorted(slots) == sorted(s.replace("Z", "+00:00") for s in [in_flight["slot"], *refused])


def _with(answer: client.Answer, status: int) -> client.Answer | None:
    return answer if answer.status == status else None
