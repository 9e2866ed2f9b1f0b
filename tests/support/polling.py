"""Polling with a deadline, for tests that wait on real processes (never a bare sleep)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")


def poll(
    what: str, probe: Callable[[], T | None], timeout: float, context: Callable[[], str] | None = None
) -> T:
    """Call `probe` until it returns something; fail naming `what` (and `context()`) after `timeout` s."""
    end = time.monotonic() + timeout
    while True:
        found = probe()
        if found is not None:
            return found
        if time.monotonic() > end:
            pytest.fail(f"timed out after {timeout} s waiting for {what}\n{context() if context else ''}")
        time.sleep(0.1)
