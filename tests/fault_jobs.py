"""A job for the fault tests that keeps its own execution record: start, a tick every 50 ms, done.

Every line names the slot, the attempt, the process and the moment (CLOCK_MONOTONIC, one clock
for every process of the host), so a test can tell from the executions themselves whether two
copies of a slot ever ran at once, and whether every slot completed. It never calls
`ctx.heartbeat()`: a batch that does not cooperate must be stopped by its fence all the same.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from service import JobContext, job
from service.slots import format_slot


def _note(ctx: JobContext, event: str) -> None:
    # One O_APPEND write per line: executions on any instance (they share the directory) each
    # add whole lines.
    line = f"{event} {format_slot(ctx.slot)} {ctx.attempt} {os.getpid()} {time.monotonic():.3f}\n"
    with open(Path(os.environ["TEST_COUNTER_DIR"]) / "stint", "a", encoding="utf-8") as out:
        out.write(line)


@job("stint", overlap="allow", timeout=600, max_attempts=5)
def stint(ctx: JobContext) -> None:
    """Run `params.seconds` (`retry_seconds` after the first attempt), noting a tick every 50 ms."""
    key = "seconds" if ctx.attempt == 1 else "retry_seconds"
    end = time.monotonic() + float(ctx.params.get(key, ctx.params.get("seconds", 1)))
    _note(ctx, "start")
    while time.monotonic() < end:
        _note(ctx, "tick")
        time.sleep(0.05)
    _note(ctx, "done")


@dataclass(frozen=True)
class Execution:
    """One execution of a slot's body, as its own lines tell it."""

    slot: str
    attempt: int
    pid: int
    first: float
    last: float
    done: bool


def executions(directory: Path) -> list[Execution]:
    """Every execution `stint` recorded in `directory`."""
    path = directory / "stint"
    lines = path.read_text().splitlines() if path.exists() else []
    seen: dict[tuple[str, int, int], list[tuple[str, float]]] = defaultdict(list)
    for line in lines:
        event, slot, attempt, pid, moment = line.split()
        seen[(slot, int(attempt), int(pid))].append((event, float(moment)))
    found = []
    for (slot, attempt, pid), notes in seen.items():
        moments = [moment for _, moment in notes]
        done = any(event == "done" for event, _ in notes)
        found.append(Execution(slot, attempt, pid, min(moments), max(moments), done))
    return found


def overlaps(found: list[Execution]) -> list[tuple[Execution, Execution]]:
    """Pairs of executions of one slot that ran at the same time (each from its first to last line)."""
    pairs = []
    for i, one in enumerate(found):
        for other in found[i + 1 :]:
            if one.slot == other.slot and one.first <= other.last and other.first <= one.last:
                pairs.append((one, other))
    return pairs


def completed(found: list[Execution]) -> set[str]:
    """The slots with an execution that ran to its end."""
    return {e.slot for e in found if e.done}
