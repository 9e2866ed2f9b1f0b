"""Start the service under real gunicorn on a free loopback port (demo, tests, benchmarks)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Self

GUNICORN_COMMAND = ("-m", "gunicorn", "-c", "python:service.gunicorn_conf", "service.wsgi:app")
GUNICORN_APP = "service.wsgi:app"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServiceProcess:
    """gunicorn serving `service.wsgi:app` with the given environment; stopped by PID."""

    def __init__(
        self,
        env: Mapping[str, str],
        *,
        workers: int = 2,
        port: int | None = None,
        log_path: Path | None = None,
        app: str = GUNICORN_APP,
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **env, "BIND": f"127.0.0.1:{self.port}", "WEB_CONCURRENCY": str(workers)}
        self.log_path = log_path
        self.command = [sys.executable, *GUNICORN_COMMAND[:-1], app]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> Self:
        """Start gunicorn and wait until /healthz answers."""
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        # A session of its own: stopping the instance can reach every process it started.
        self.process = subprocess.Popen(
            self.command, env=self.env, stdout=out, stderr=out, start_new_session=True
        )
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.process.returncode} (log: {self.log_path})")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=1):  # noqa: S310 - loopback
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"gunicorn did not answer on {self.url} within {timeout} s")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> None:
        """Stop gunicorn (SIGTERM to the arbiter) and wait for it."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """Kill the whole instance at once: the arbiter, its workers and every batch it started."""
        if self.process is None:
            return
        for pid in self.members():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
        self.process.wait(10)

    def members(self) -> list[int]:
        """Every live process of the instance: arbiter, workers, keeper, supervisors, batches."""
        return _session_members(self.process.pid) if self.process is not None else []

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _session_members(sid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getsid(int(entry.name)) == sid:
                members.append(int(entry.name))
        except (ProcessLookupError, PermissionError):
            continue
    return members
