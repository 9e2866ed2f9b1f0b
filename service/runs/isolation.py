"""Process mechanics of batches: a clean start for forked processes, and a batch in its own group."""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from service.runs.waiting import readable

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


def reset_signals() -> None:
    """Default handlers and no wake-up descriptor: what a forked process's parent had is not its own."""
    for name in _RESET_SIGNALS:
        signal.signal(getattr(signal, name), signal.SIG_DFL)
    with contextlib.suppress(ValueError, OSError):
        signal.set_wakeup_fd(-1)


def leave_web_worker() -> None:
    """Drop what a forked web worker hands down: its signal handlers and its sockets.

    An inherited listening socket would keep a stopped instance's port accepting connections
    that nobody serves, and an inherited client socket would hold the HTTP answer open.
    """
    reset_signals()
    fds = [int(n) for n in os.listdir("/proc/self/fd")] if os.path.isdir("/proc/self/fd") else range(3, 1024)
    for fd in fds:
        if fd < 3:
            continue
        try:
            if stat.S_ISSOCK(os.fstat(fd).st_mode):
                os.close(fd)
        except OSError:
            continue


def close_inherited(keep: set[int], keep_files: tuple[str, ...] = ()) -> None:
    """Close every descriptor above 2 but `keep` and those open on `keep_files` (paths, or path
    prefixes): the launcher's socket, lock and ledger session must not live on in a batch (a
    PostgreSQL session held open by a batch would keep the instance's liveness lock after its
    launcher died).

    The SQLite ledger's files are the exception: SQLite keeps one record per open database file
    for the whole process (https://www.sqlite.org/howtocorrupt.html#fork), which the child
    inherits with the parent's descriptors in it; a connection the batch opens to the same file
    reuses that record, so closing those descriptors under it fails its locks ("locking
    protocol"). They stay open and unused; the child never touches the parent's connection.
    """
    if keep_files:
        keep = keep | _descriptors_on(keep_files)
    low = 3
    for fd in sorted(fd for fd in keep if fd >= 3):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, os.sysconf("SC_OPEN_MAX") if hasattr(os, "sysconf") else 65536)


def _descriptors_on(paths: tuple[str, ...]) -> set[int]:
    """This process's descriptors open on a file whose path starts with one of `paths`."""
    found = set()
    with contextlib.suppress(OSError):
        for name in os.listdir("/proc/self/fd"):
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/self/fd/{name}").startswith(paths):
                    found.add(int(name))
    return found


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
    def start(
        cls,
        body: Callable[[int], int],
        nice: int,
        output: Pipes | None = None,
        keep: tuple[int, ...] = (),
        keep_files: tuple[str, ...] = (),
    ) -> BatchProcess:
        """Fork and run `body(error_fd)` in the child; its return value is the exit code.

        With `output`, the child's fds 1 and 2 are those pipes' write ends (the run's log). Of
        the other descriptors the child inherits, only `keep` and those on `keep_files` stay open.
        """
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.close(read_fd)
                os.setpgid(0, 0)
                reset_signals()
                if output is not None:
                    output.redirect_here()
                close_inherited({write_fd, *keep}, keep_files)
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
            if not readable([self._pidfd], timeout):
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

    def fileno(self) -> int | None:
        """A descriptor that becomes readable when the batch process ends (its pidfd), if any."""
        return self._pidfd

    def terminate_group(self) -> None:
        """Ask the batch to stop: SIGTERM to its process group."""
        self._signal_group(signal.SIGTERM)

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
