"""Measurement 3: 1,000 concurrent deliveries of one slot across three instances behind nginx."""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from bench.stack import Stack, slot_text
from service.cli import client
from tests.support.nginx import Nginx

JOB = "bench-stamp"
INSTANCES = 3
RETRIES = 5


@dataclass(frozen=True)
class Storm:
    """One storm: how long until every delivery was answered, the answers, and executions of the slot."""

    seconds: float
    statuses: dict[int, int]
    retried: int  # deliveries whose connection nginx dropped, delivered again as the Lambda would
    executions: int
    ledger_runs: int


def measure(stack: Stack, *, reps: int, deliveries: int) -> list[Storm]:
    """Three instances on one PostgreSQL ledger behind nginx round-robin; `reps` storms of fresh slots."""
    url = stack.postgres_url()
    instances = [stack.instance(f"fleet-{n}", url) for n in range(1, INSTANCES + 1)]
    nginx = stack.enter(Nginx([f"127.0.0.1:{i.port}" for i in instances]))
    storms = []
    for _ in range(reps):
        slot = stack.slot()
        tokens = [stack.mint(JOB, slot) for _ in range(deliveries)]
        storm = _storm(nginx.port, f"/v1/jobs/{JOB}/runs", tokens, functools.partial(stack.mint, JOB, slot))
        seconds, answers, retried = asyncio.run(storm)
        ids = {body.get("id") for _, body in answers if isinstance(body, dict) and body.get("id")}
        for run_id in ids:
            client.wait_for_run(nginx.url, str(run_id), stack.read_token, timeout=60)
        time.sleep(1.0)  # a second execution, were there one, would have stamped by now
        text = slot_text(slot)
        executions = sum(1 for s in stack.stamps() if s.job == JOB and s.slot == text and s.event == "start")
        runs = [
            r
            for r in client.list_runs(nginx.url, stack.read_token(), job=JOB, limit=1000)
            if r["slot"] == text
        ]
        statuses = Counter(status for status, _ in answers)
        storms.append(Storm(seconds, dict(sorted(statuses.items())), retried, executions, len(runs)))
    return storms


async def _storm(
    port: int, path: str, tokens: list[str], mint: Callable[[], str]
) -> tuple[float, list[tuple[int, object]], int]:
    """Open every connection at once, each POSTing its own token; time until the last answer.

    A delivery whose connection fails is sent again with a fresh token after a short pause, as
    the Lambda does on connection errors; the number of such deliveries is returned too.
    """
    retried = 0

    async def until_answered(token: str) -> tuple[int, object]:
        nonlocal retried
        answer = await _deliver(port, path, token)
        for attempt in range(RETRIES):
            if answer[0] != 0:
                break
            retried += attempt == 0
            await asyncio.sleep(0.05 * 2**attempt)
            answer = await _deliver(port, path, mint())
        return answer

    began = time.perf_counter()
    answers = await asyncio.gather(*(until_answered(token) for token in tokens))
    return time.perf_counter() - began, answers, retried


async def _deliver(port: int, path: str, token: str) -> tuple[int, object]:
    """POST one token; status 0 when the connection failed."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return 0, None
    try:
        request = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"
            "Content-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
        )
        writer.write(request.encode())
        await writer.drain()
        data = await reader.read()
    except OSError:
        return 0, None
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head else 0
    try:
        return status, json.loads(body)
    except ValueError:
        return status, None
