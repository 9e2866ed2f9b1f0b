"""The launcher as a child of gunicorn's arbiter or of `batch-trigger keeper`: started, and restarted.

It runs as `python -m service.runs.launcher`: a fresh interpreter, so it carries neither the
Flask app nor anything the arbiter loaded, and inherits no descriptor (`close_fds`): not the
listening sockets. When it dies, `keep_alive()` (called by the arbiter about once a second, by
the keeper command between sweeps) starts a new one, which records what the old one spooled,
stops the batches it left, and adopts the instance's accepted runs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import subprocess
import sys
import time

log = logging.getLogger("batch_trigger.runner")
#: Restarts closer together than this wait: a launcher that cannot start must not spin.
RESTART_PAUSE = 1.0


class LauncherProcess:
    """One launcher child process, restarted when it has ended."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self._pidfd: int | None = None
        self._started = 0.0

    @property
    def pid(self) -> int | None:
        """The launcher's pid, while one was started."""
        return self.process.pid if self.process is not None else None

    def start(self) -> int:
        """Start the launcher; its pid."""
        self.process = subprocess.Popen(
            [sys.executable, "-m", "service.runs.launcher"], close_fds=True
        )
        self._started = time.monotonic()
        if self._pidfd is not None:
            os.close(self._pidfd)
        self._pidfd = None
        with contextlib.suppress(OSError, AttributeError):
            # A pidfd tells the process's end even after someone else reaped it (gunicorn's
            # arbiter reaps every child with waitpid(-1)), and never names a recycled pid.
            self._pidfd = os.pidfd_open(self.process.pid)
        return self.process.pid

    def alive(self) -> bool:
        """True while the launcher process runs."""
        if self.process is None:
            return False
        if self._pidfd is not None:
            ready, _, _ = select.select([self._pidfd], [], [], 0)
            return not ready
        return self.process.poll() is None

    def keep_alive(self) -> int | None:
        """Start a new launcher if the last one ended; the new pid, or None when none was needed."""
        if self.alive() or time.monotonic() - self._started < RESTART_PAUSE:
            return None
        log.error("the launcher ended; starting a new one")
        return self.start()

    def stop(self, timeout: float) -> None:
        """Ask the launcher to stop its batches (recorded `interrupted`) and wait for it."""
        if self.process is None or not self.alive():
            return
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGTERM)
        end = time.monotonic() + timeout
        while self.alive() and time.monotonic() < end:
            with contextlib.suppress(ChildProcessError):
                self.process.poll()
            time.sleep(0.05)
