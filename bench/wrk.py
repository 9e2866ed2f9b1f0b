"""Drive wrk (Debian's package) with bench/tokens.lua and read back its one-line JSON summary."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

SCRIPT = Path(__file__).with_name("tokens.lua")


@dataclass(frozen=True)
class Load:
    """What one wrk run measured."""

    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    statuses: dict[int, int] = field(default_factory=dict)
    exhausted: int = 0

    def unexpected(self, *expected: int) -> int:
        """Answers with a status outside `expected`, socket errors and token shortfalls."""
        other = sum(n for code, n in self.statuses.items() if code not in expected)
        return other + self.errors + self.exhausted


def wrk_binary() -> str:
    """The wrk executable, or a clear error naming the package."""
    found = shutil.which("wrk")
    if found is None:
        raise FileNotFoundError("wrk not found: apt-get install wrk (or run `bash .ci/system-deps` as root)")
    return found


def wrk_version() -> str:
    """wrk's version line."""
    done = subprocess.run([wrk_binary(), "-v"], capture_output=True, text=True, check=False)
    return (done.stdout or done.stderr).splitlines()[0].split(" Copyright")[0].strip()


def run(
    url: str,
    *,
    seconds: float,
    connections: int,
    tokens: Path | None = None,
    method: str = "POST",
    threads: int = 1,
) -> Load:
    """Run wrk against `url` for `seconds`; every request carries the next token of `tokens`, if any."""
    command = [
        wrk_binary(), f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s",
        "-s", str(SCRIPT), url, "--", str(tokens or ""), str(threads), method,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip()}")
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    seconds_run = summary["duration_us"] / 1e6
    return Load(
        rps=summary["requests"] / seconds_run,
        p50_ms=summary["p50_us"] / 1000,
        p99_ms=summary["p99_us"] / 1000,
        requests=summary["requests"],
        errors=summary["errors"],
        statuses={int(code): n for code, n in summary["statuses"].items()},
        exhausted=summary["exhausted"],
    )
