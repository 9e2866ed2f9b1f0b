"""Measurement 1: the trigger endpoint against a bare Flask endpoint under the same gunicorn config."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import datetime

from bench import wrk
from bench.stack import BARE_APP, Stack
from service.cli import client

JOB = "bench-noop"
CONNECTIONS = 16
TOKEN_RATE = 8000  # tokens minted per second of load: above what any scenario reaches here


@dataclass(frozen=True)
class Scenario:
    """One row of the comparison: a ledger and a kind of request."""

    name: str
    ledger: str  # "sqlite" | "postgresql"
    duplicates: bool


SCENARIOS = (
    Scenario("new claims, SQLite", "sqlite", duplicates=False),
    Scenario("duplicate storm, SQLite", "sqlite", duplicates=True),
    Scenario("new claims, PostgreSQL", "postgresql", duplicates=False),
    Scenario("duplicate storm, PostgreSQL", "postgresql", duplicates=True),
)


@dataclass(frozen=True)
class Comparison:
    """A scenario's medians over the repetitions, beside the bare endpoint's of the same repetitions."""

    scenario: Scenario
    trigger: list[wrk.Load]
    bare: list[wrk.Load]
    unexpected: int

    @property
    def ratio(self) -> float:
        """Median over repetitions of trigger req/s ÷ bare req/s measured in the same repetition."""
        return statistics.median(t.rps / b.rps for t, b in zip(self.trigger, self.bare, strict=True))


def median(loads: list[wrk.Load], name: str) -> float:
    """The median of one field over repetitions."""
    return statistics.median(float(getattr(load, name)) for load in loads)


def measure(stack: Stack, *, reps: int, seconds: float) -> list[Comparison]:
    """Alternate bare and trigger runs `reps` times, so drift on a shared machine hits both alike."""
    bare = stack.instance("bare", app=BARE_APP)
    services = {
        "sqlite": stack.instance("sqlite-1"),
        "postgresql": stack.instance("pg-1", stack.postgres_url()),
    }
    storm_slots = {ledger: _claimed_slot(stack, svc.url) for ledger, svc in services.items()}
    count = int(seconds * TOKEN_RATE)
    bare_loads: list[wrk.Load] = []
    loads: dict[str, list[wrk.Load]] = {s.name: [] for s in SCENARIOS}
    unexpected = dict.fromkeys(loads, 0)
    path = f"/v1/jobs/{JOB}/runs"
    for _ in range(reps):
        tokens = stack.token_file(JOB, count)
        bare_load = wrk.run(bare.url + path, seconds=seconds, connections=CONNECTIONS, tokens=tokens)
        bare_loads.append(bare_load)
        tokens.unlink()
        for scenario in SCENARIOS:
            service = services[scenario.ledger]
            same = storm_slots[scenario.ledger] if scenario.duplicates else None
            tokens = stack.token_file(JOB, count, same_slot=same)
            load = wrk.run(service.url + path, seconds=seconds, connections=CONNECTIONS, tokens=tokens)
            tokens.unlink()
            loads[scenario.name].append(load)
            unexpected[scenario.name] += load.unexpected(200 if scenario.duplicates else 202)
            # New claims leave a batch per request behind: let them finish before the next run.
            stack.settle(service.url, JOB)
    return [Comparison(s, loads[s.name], bare_loads, unexpected[s.name]) for s in SCENARIOS]


def _claimed_slot(stack: Stack, url: str) -> datetime:
    """A slot that already has its run, so that every request of a storm is a duplicate."""
    slot = stack.slot()
    answer = client.trigger(url, JOB, stack.mint(JOB, slot))
    if answer.status != 202:
        raise RuntimeError(f"could not claim the storm's slot: {answer.status} {answer.body}")
    return slot
