"""Measurement 5: p99 of /healthz on an instance while a CPU-bound batch runs there, against idle."""

from __future__ import annotations

import time
from dataclasses import dataclass

from bench import wrk
from bench.stack import Stack, slot_text
from service.cli import client

JOB = "bench-spin"
CONNECTIONS = 4  # one per gunicorn worker: the web tier busy, not queueing


@dataclass(frozen=True)
class Interference:
    """/healthz loads with the instance idle and with a CPU-bound batch, and the CPU the batches got."""

    idle: list[wrk.Load]
    busy: list[wrk.Load]
    batch_cpu_share: list[float]  # CPU seconds the batch used ÷ its wall seconds


def measure(stack: Stack, *, reps: int, seconds: float) -> Interference:
    """Alternate idle and busy windows on one instance (SQLite ledger, the shipped BATCH_NICE=10)."""
    service = stack.instance("web-1")
    idle, busy, shares = [], [], []
    for _ in range(reps):
        idle.append(wrk.run(f"{service.url}/healthz", seconds=seconds, connections=CONNECTIONS, method="GET"))
        slot = stack.slot()
        spin = seconds + 2
        answer = client.trigger(service.url, JOB, stack.mint(JOB, slot, params={"seconds": spin}))
        if answer.status != 202:
            raise RuntimeError(f"the CPU-bound batch did not start: {answer.status} {answer.body}")
        _wait_for(stack, slot_text(slot), "start")
        busy.append(wrk.run(f"{service.url}/healthz", seconds=seconds, connections=CONNECTIONS, method="GET"))
        cpu = float(_wait_for(stack, slot_text(slot), "cpu", timeout=spin + 30))
        shares.append(cpu / spin)
        stack.settle(service.url, JOB)
    return Interference(idle, busy, shares)


def _wait_for(stack: Stack, slot: str, event: str, timeout: float = 30) -> str:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for stamp in stack.stamps():
            if stamp.job == JOB and stamp.slot == slot and stamp.event == event:
                return stamp.extra
        time.sleep(0.05)
    raise RuntimeError(f"the {JOB} batch of {slot} wrote no {event!r} stamp within {timeout:.0f} s")
