"""Measurement 2: a cold Lambda (fresh interpreter, import, first event) against a minimal handler."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from bench.stack import REPO, Stack, slot_text

HERE = Path(__file__).resolve().parent
JOB = "bench-noop"
WARMUP = 3  # rounds whose times are dropped: page cache, the service's first connections


@dataclass(frozen=True)
class ColdStart:
    """Median times (ms) of both handlers in one layout: process start to first event answered."""

    layout: str
    handler_ms: float
    minimal_ms: float
    runs: int

    @property
    def ratio(self) -> float:
        """The real handler's median over the minimal one's."""
        return self.handler_ms / self.minimal_ms


def measure(stack: Stack, url: str, *, runs: int) -> list[ColdStart]:
    """Time both handlers as fresh processes in the deployed layout (the zip) and from the venv."""
    package = _unpacked_zip(stack.work, "lambda-task")
    compiled = _unpacked_zip(stack.work, "lambda-task-pyc")
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", "--invalidation-mode", "unchecked-hash", str(compiled)],
        check=True, timeout=120,
    )  # fmt: skip
    event = {"job": JOB, "slot": slot_text(stack.slot()), "event_id": "cold-start"}
    # /var/task is read-only in Lambda: no bytecode is written, so whatever the zip lacks is
    # compiled again on every cold start. The same here, whatever the caller's environment says.
    base = {
        **os.environ,
        "APP_URL": url,
        "TRIGGER_SECRET": stack.secret,
        "BENCH_EVENT": json.dumps(event),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    base.pop("PYTHONPATH", None)
    layouts = {
        # What Lambda runs: the zip's directory on the path, no site-packages (so no cryptography).
        "zip as built (with its bytecode), python -S": (["-S"], {**base, "PYTHONPATH": str(package)}),
        # The same with the bytecode a build step could ship (pyc for the runtime's Python version).
        "zip, bytecode compiled again here, python -S": (["-S"], {**base, "PYTHONPATH": str(compiled)}),
        # The development venv: site-packages, the editable install, cryptography imported by jwt.
        "venv (site-packages)": ([], base),
    }
    results = []
    for layout, (flags, env) in layouts.items():
        commands = [
            [sys.executable, *flags, str(HERE / name)] for name in ("cold_lambda.py", "cold_minimal.py")
        ]
        for command in commands:  # both must really deliver before their times mean anything
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
            if done.returncode != 0:
                raise RuntimeError(f"{command[-1]} did not deliver: {done.stdout}{done.stderr}")
        handler_ms, minimal_ms = _timed(commands, env, runs)
        results.append(ColdStart(layout, handler_ms, minimal_ms, runs))
    return results


def _timed(commands: list[list[str]], env: dict[str, str], runs: int) -> tuple[float, float]:
    """Median ms from process start to first event answered, over `runs` fresh processes each, interleaved."""
    times: list[list[float]] = [[], []]
    for round_ in range(runs + WARMUP):
        for index, command in enumerate(commands):
            began = time.monotonic()
            done = subprocess.run(command, env=env, capture_output=True, text=True, check=True, timeout=60)
            answered_at = json.loads(done.stdout.strip().splitlines()[-1])["answered_at"]
            if round_ >= WARMUP:
                times[index].append((answered_at - began) * 1000)
    return statistics.median(times[0]), statistics.median(times[1])


def _unpacked_zip(work: Path, name: str) -> Path:
    """Build the Lambda zip the way `make lambda-zip` does, and unpack it as Lambda would."""
    archive = work / "lambda_trigger.zip"
    if not archive.exists():
        subprocess.run(
            [sys.executable, str(REPO / "deploy" / "build_lambda_zip.py"), "--output", str(archive)],
            capture_output=True, check=True, timeout=120,
        )  # fmt: skip
    target = work / name
    with zipfile.ZipFile(archive) as unpacked:
        unpacked.extractall(target)
    return target
