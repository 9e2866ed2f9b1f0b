"""A cold Lambda container: import the real handler and serve one event (run as a fresh process)."""

from __future__ import annotations

import json
import os
import time

from lambda_trigger.handler import handler

if __name__ == "__main__":
    answer = handler(json.loads(os.environ["BENCH_EVENT"]))
    # The moment the first event was answered (CLOCK_MONOTONIC, shared with the bench process):
    # a warm Lambda container lives on, so interpreter shutdown is no part of a cold start.
    print(json.dumps({"answer": answer, "answered_at": time.monotonic()}))
