"""Metrics under threads: a threaded host app's first requests arrive at once (gthread workers, a
threaded dev server), and every one of them counts its answer through `metrics()`.

The metric families are created once per process, on first use, so the race is only at a
process's start: each round runs in a fresh interpreter, the real app (`create_app`) on a real
SQLite file, its test client called from many threads released together by a barrier.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.support.live import REPO

THREADS = 16
ROUNDS = 6
SCRIPT = """
import json, sys, threading
sys.setswitchinterval(1e-6)  # switch threads as often as possible: the race shows if it exists
from service.config import Settings
from service.web.factory import create_app

threads = int(sys.argv[2])
settings = Settings.from_env({
    "LEDGER_URL": f"sqlite:///{sys.argv[1]}/ledger.db", "TRIGGER_SECRET": "t" * 40,
    "RUN_DIR": f"{sys.argv[1]}/run", "INSTANCE_ID": "threads-1",
})
app = create_app(settings)
barrier = threading.Barrier(threads)
codes = []

def first_request():
    client = app.test_client()
    barrier.wait()
    codes.append(client.get("/healthz").status_code)

workers = [threading.Thread(target=first_request) for _ in range(threads)]
for worker in workers:
    worker.start()
for worker in workers:
    worker.join()
print(json.dumps(codes))
"""


def test_it_answers_every_concurrent_first_request_of_a_threaded_app(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    for round_ in range(ROUNDS):
        work = tmp_path / f"round-{round_}"
        work.mkdir()
        done = subprocess.run(
            [sys.executable, "-c", SCRIPT, str(work), str(THREADS)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        codes = json.loads(done.stdout.splitlines()[-1])
        assert codes == [200] * THREADS, done.stderr[-3000:]
