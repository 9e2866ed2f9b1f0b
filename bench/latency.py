"""Measurement 4: event-to-batch-start latency, from the Lambda handler's call to the job body."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

from bench.stack import Stack, slot_text

JOB = "bench-stamp"
RULE = "BenchStamp"
PAUSE = 0.02  # seconds between firings: schedules are sparse, so each starts on a quiet instance


def measure(stack: Stack, url: str, *, count: int) -> list[float]:
    """Invoke the real handler (warm container) `count` times; each latency in ms, in firing order."""
    from lambda_trigger import handler as lambda_handler

    invoked: dict[str, float] = {}
    with _lambda_environment(url, stack.secret):
        lambda_handler.reset_container()
        _fire(lambda_handler.handler, stack, {})  # warm: settings, signer, the first connection
        for _ in range(count):
            _fire(lambda_handler.handler, stack, invoked)
            time.sleep(PAUSE)
        lambda_handler.reset_container()
    started = _wait_for_starts(stack, set(invoked), timeout=60)
    return [(started[slot] - at) * 1000 for slot, at in invoked.items()]


def _fire(handler: object, stack: Stack, invoked: dict[str, float]) -> None:
    slot = slot_text(stack.slot())
    event = {
        "version": "0",
        "id": os.urandom(8).hex(),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "time": slot,
        "region": "us-east-1",
        "resources": [f"arn:aws:events:us-east-1:123456789012:rule/{RULE}"],
        "detail": {},
    }
    began = time.monotonic()
    result = handler(event, None)  # type: ignore[operator]
    if result.get("status") != "accepted":
        raise RuntimeError(f"the handler did not start a run: {result}")
    invoked[slot] = began


def _wait_for_starts(stack: Stack, slots: set[str], timeout: float) -> dict[str, float]:
    end = time.monotonic() + timeout
    while True:
        started = {
            s.slot: s.at for s in stack.stamps() if s.job == JOB and s.event == "start" and s.slot in slots
        }
        if len(started) == len(slots):
            return started
        if time.monotonic() > end:
            raise RuntimeError(f"only {len(started)} of {len(slots)} batches started within {timeout:.0f} s")
        time.sleep(0.1)


@contextmanager
def _lambda_environment(url: str, secret: str) -> Iterator[None]:
    """The Lambda's configuration in this process's environment, restored afterwards."""
    values = {"APP_URL": url, "TRIGGER_SECRET": secret, "RULE_JOBS": json.dumps({RULE: JOB})}
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
