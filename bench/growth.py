"""Growth: the API's reads, the keeper's sweep, the watchdog and prune on ledgers of 0, 100 k and
1 M runs — `python -m bench.growth 0=URL 100000=URL 1000000=URL` prints JSON of median ms per
operation and size.

One process per backend holds the three ledgers and measures them in interleaved rounds, so that
load on a shared machine falls on every size alike. Each ledger is filled by bulk SQL through the
product's schema (tests.support.bulk: 200 jobs, 3 years of slots), then given the same recent
working set, so every size answers each request with the same rows: each job's newest run, 60
failed runs of job-007, nothing for the shipped `daily`.
"""

from __future__ import annotations

import gc
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from flask.testing import FlaskClient

SIZES = (0, 100_000, 1_000_000)
ROUNDS = 40
PER_ROUND = 5  # 200 calls per operation and size
DUE_ROUNDS = 10  # the watchdog with a day's slots newly due, and prune: each call needs fresh data
DAY_OF_RUNS = 913  # 1 M runs over 3 years


class Ledgers:
    """One ledger of one size, with the app, keeper and watchdog that read it."""

    def __init__(self, url: str, size: int, run_dir: str) -> None:
        from service.alerts import Alerts
        from service.config import Settings
        from service.ops.keeper import Keeper
        from service.ops.watchdog import Watchdog
        from service.web.auth import mint_token
        from service.web.factory import create_app
        from tests.support import bulk

        env = {
            "LEDGER_URL": url,
            "TRIGGER_SECRET": "growth-" + os.urandom(16).hex(),
            "BATCH_MODULES": "bench.growth_jobs",
            "RUN_DIR": run_dir,
            "RETENTION_DAYS": "0",  # prune is measured on its own
            "INSTANCE_ID": "growth",
            "LOG_LEVEL": "ERROR",  # the first check reports 8,000 missed slots
        }
        self.settings = Settings.from_env(env)
        self.app = create_app(self.settings)
        state = self.app.extensions["batch_trigger"]
        self.ledger, self.registry = state.ledger, state.registry
        self.client: FlaskClient = self.app.test_client()
        self.read = {"Authorization": f"Bearer {mint_token(self.settings, 'read', lifetime=300)}"}
        self.now = bulk.END + timedelta(days=1)
        bulk.fill(self.ledger, size)
        _working_set(self.ledger, self.now)
        # The watchdog has watched for 41 days: its first check judges the whole 40-day look-back.
        for job in self.registry.names():
            self.ledger.watch_from([job], self.now - timedelta(days=41))
        bulk.analyze(self.ledger)
        alerts = Alerts(None, self.settings.timezone, "growth")
        self.keeper = Keeper(self.settings, self.registry, self.ledger, alerts)
        self.watchdog = Watchdog(self.registry, self.ledger, alerts, self.settings.timezone)
        self.keeper.sweep(self.now)
        self.due = 0
        self.pruned = 0

    def get(self, path: str) -> None:
        """One in-process API read; anything but 200 stops the bench."""
        answer = self.client.get(path, headers=self.read)
        if answer.status_code != 200:
            raise RuntimeError(f"GET {path}: {answer.status_code} {answer.get_data(as_text=True)[:200]}")

    def next_day_due(self) -> None:
        """A watchdog check one day later than the last: every job's midnight slot is newly due."""
        self.due += 1
        self.watchdog.check(self.now + timedelta(days=self.due))

    def prune_a_day(self) -> Callable[[], Any]:
        """Add a day of old runs (untimed), then return the prune that deletes exactly them."""
        from tests.support import bulk

        self.pruned += 1
        day_end = bulk.END - bulk.SPAN - timedelta(days=self.pruned)
        bulk.fill(
            self.ledger, DAY_OF_RUNS, span=timedelta(days=1), end=day_end,
            statistics=False,
        )  # fmt: skip
        return lambda: self.ledger.prune(day_end + timedelta(minutes=2))


def _working_set(ledger: Any, now: Any) -> None:
    """The same recent runs at every size: one succeeded run per job, and 60 failed runs of job-007."""
    from service.ledger import ClaimRequest, Status
    from tests.support.bulk import job_names

    def run(job: str, slot: Any, status: Status) -> None:
        claimed = ledger.claim(ClaimRequest(job, slot, "schedule", "growth", overlap="allow"), slot)
        ledger.start(claimed.run.id, "growth", slot, timedelta(minutes=1))
        ledger.finish(claimed.run.id, status, slot + timedelta(seconds=30))

    for n, job in enumerate(job_names()):
        run(job, now - timedelta(hours=5, minutes=n), Status.SUCCEEDED)
    for n in range(60):
        run("job-007", now - timedelta(hours=2, minutes=n), Status.FAILED)


def operations(led: Ledgers) -> dict[str, Callable[[], Any]]:
    """What is timed, by the label the report prints."""
    jobs = len(led.registry.names())
    return {
        f"GET /v1/jobs ({jobs} jobs)": lambda: led.get("/v1/jobs"),
        "GET /v1/runs?job=J, a job with no runs": lambda: led.get("/v1/runs?job=daily"),
        "GET /v1/runs?job=J, a job with runs (50 shown)": lambda: led.get("/v1/runs?job=job-007"),
        "GET /v1/runs?status=succeeded (50 shown)": lambda: led.get("/v1/runs?status=succeeded"),
        "GET /v1/runs?status=failed (50 shown)": lambda: led.get("/v1/runs?status=failed"),
        "keeper sweep (leases, recovery, pauses, watchdog)": lambda: led.keeper.sweep(led.now),
        # i-1 ran a sixth of the history: the read must find only its unfinished runs.
        "launcher heartbeat: the runs to adopt": lambda: led.ledger.active_on("i-1"),
        "watchdog check, nothing newly due": lambda: led.watchdog.check(led.now),
    }


def main(urls: dict[int, str]) -> dict[str, dict[str, float]]:
    """Median ms per operation and size (runs → ledger URL), measured in interleaved rounds."""
    sizes = sorted(urls)
    with tempfile.TemporaryDirectory(prefix="batch-trigger-growth-") as run_dir:
        ledgers = [Ledgers(urls[size], size, run_dir) for size in sizes]
        samples: dict[tuple[str, int], list[float]] = {}
        for _ in range(ROUNDS):
            for size, led in zip(sizes, ledgers, strict=True):
                for label, operation in operations(led).items():
                    samples.setdefault((label, size), []).extend(_times(operation, PER_ROUND))
        for _ in range(DUE_ROUNDS):
            for size, led in zip(sizes, ledgers, strict=True):
                label = f"watchdog check, a day's {len(led.registry.names())} slots newly due"
                samples.setdefault((label, size), []).extend(_times(led.next_day_due, 1))
                samples.setdefault((f"prune of one day ({DAY_OF_RUNS} runs)", size), []).extend(
                    _times(led.prune_a_day(), 1)
                )
        for led in ledgers:
            led.ledger.close()
    result: dict[str, dict[str, float]] = {}
    for (label, size), values in samples.items():
        result.setdefault(label, {})[str(size)] = statistics.median(values) * 1000
    return result


def _times(operation: Callable[[], Any], count: int) -> list[float]:
    # A collection of the three apps' garbage lands on whichever call is running: collect first.
    gc.collect()
    gc.disable()
    found = []
    try:
        for _ in range(count):
            began = time.perf_counter()
            operation()
            found.append(time.perf_counter() - began)
    finally:
        gc.enable()
    return found


if __name__ == "__main__":
    given = dict(arg.split("=", 1) for arg in sys.argv[1:])
    print(json.dumps(main({int(size): url for size, url in given.items()})))
