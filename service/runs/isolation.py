"""Process mechanics of the runner: detaching from the web worker and watching a batch process."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import stat
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from service.runs.capture import Pipes

# Signals a gunicorn worker (or a host app) may have taken over; a supervisor starts clean.
_RESET_SIGNALS = (
    "SIGTERM",
    "SIGINT",
    "SIGQUIT",
    "SIGHUP",
    "SIGUSR1",
    "SIGUSR2",
    "SIGWINCH",
    "SIGABRT",
    "SIGCHLD",
)
ERROR_LIMIT = 2000


def detach(child: Callable[[], None]) -> None:
    """Run `child` in a grandchild process that no web worker waits for (a double fork).

    The intermediate process exits at once, so the grandchild is re-parented to the init
    process (gunicorn's arbiter reaps such orphans when it is PID 1 in a container) and
    survives the web worker's recycling. Raises OSError when the processes cannot start.
    """
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            if os.fork() == 0:
                try:
                    child()
                finally:
                    os._exit(0)
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise OSError("the supervisor process could not be started")


def leave_web_worker() -> None:
    """Drop what a forked web worker hands down: its signal handlers and its sockets.

    An inherited listening socket would keep a stopped instance's port accepting connections
    that nobody serves, and an inherited client socket would hold the HTTP answer open.
    """
    for name in _RESET_SIGNALS:
        signal.signal(getattr(signal, name), signal.SIG_DFL)
    with contextlib.suppress(ValueError, OSError):
        signal.set_wakeup_fd(-1)
    fds = [int(n) for n in os.listdir("/proc/self/fd")] if os.path.isdir("/proc/self/fd") else range(3, 1024)
    for fd in fds:
        if fd < 3:
            continue
        try:
            if stat.S_ISSOCK(os.fstat(fd).st_mode):
                os.close(fd)
        except OSError:
            continue


def _flush_standard_streams() -> None:
    """What the batch printed reaches its pipe before os._exit skips the interpreter's flush."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


class BatchProcess:
    """A batch body running in its own process group, at lower CPU priority."""

    def __init__(self, pid: int, error_fd: int) -> None:
        self.pid = pid
        self._error_fd = error_fd
        self._pidfd = os.pidfd_open(pid) if hasattr(os, "pidfd_open") else None
        self.status: int | None = None

    @classmethod
    def start(cls, body: Callable[[int], int], nice: int, output: Pipes | None = None) -> BatchProcess:
        """Fork and run `body(error_fd)` in the child; its return value is the exit code.

        With `output`, the child's fds 1 and 2 are those pipes' write ends (the run's log).
        """
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.close(read_fd)
                os.setpgid(0, 0)
                if output is not None:
                    output.redirect_here()
                if nice:
                    os.nice(nice)
                code = body(write_fd)
            finally:
                _flush_standard_streams()
                os._exit(code)
        os.close(write_fd)
        # Set the group from both sides so that a kill right after fork cannot miss it.
        with contextlib.suppress(OSError):
            os.setpgid(pid, pid)
        os.set_blocking(read_fd, False)
        return cls(pid, read_fd)

    def wait(self, timeout: float) -> int | None:
        """Wait up to `timeout` seconds; the exit code (negative: killed by that signal) or None."""
        if self.status is not None:
            return self.status
        if self._pidfd is not None:
            ready, _, _ = select.select([self._pidfd], [], [], max(0.0, timeout))
            if not ready:
                return None
        else:
            end = time.monotonic() + timeout
            while os.waitpid(self.pid, os.WNOHANG) == (0, 0):
                if time.monotonic() >= end:
                    return None
                time.sleep(0.02)
        _, raw = os.waitpid(self.pid, 0)
        self.status = os.waitstatus_to_exitcode(raw)
        return self.status

    def stop(self, grace: float) -> None:
        """Ask the batch to stop (SIGTERM to its group); kill it after `grace` seconds."""
        self._signal_group(signal.SIGTERM)
        if self.wait(grace) is None:
            self._signal_group(signal.SIGKILL)
            self.wait(5.0)

    def reap_group(self) -> None:
        """Kill whatever the batch left behind in its process group."""
        self._signal_group(signal.SIGKILL)

    def error_text(self) -> str:
        """The short error summary the batch wrote before exiting, if any."""
        try:
            data = os.read(self._error_fd, ERROR_LIMIT)
        except (BlockingIOError, OSError):
            data = b""
        return data.decode("utf-8", "replace").strip()

    def close(self) -> None:
        """Release the pipe and the pidfd."""
        for fd in (self._error_fd, self._pidfd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)

    def _signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)
