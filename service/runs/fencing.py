"""Fencing: a batch stops by itself before its lease can be taken over, even if its launcher freezes.

After every lease renewal that succeeded (one statement, sent at monotonic time t0) the launcher
writes the batch a new deadline, `t0 + LEASE_SECONDS - margin`, over a pipe. In the batch process:

- a real-time interval timer is armed for the deadline. Its SIGALRM keeps the default action,
  so the *kernel* ends the process when it fires: no Python code and no GIL are needed, so a
  batch stuck in C code, or a launcher that is stopped (SIGSTOP, a frozen VM), cannot keep it
  alive;
- a thread re-arms the timer for each new deadline, and kills the batch's whole process group
  (what the batch started, too) just before the deadline, or at once when the launcher is
  gone (the pipe's end of file) or says the run is no longer ours.

Another instance takes a run over only `margin` after its lease ended (the keeper's sweep,
`service.ledger.sql`), so a fenced batch has stopped twice the margin before a next attempt can start.
Monotonic clocks are compared only within one host; the lease itself is on the ledger's clock.
"""

from __future__ import annotations

import contextlib
import os
import signal
import struct
import threading
import time

from service.runs.waiting import readable

_DEADLINE = struct.Struct("d")
#: Written instead of a deadline: the run is no longer ours (another instance declared it lost).
LOST = -1.0
#: The thread kills the group this long before the deadline; the timer is the backstop.
_AHEAD = 0.1


def margin(lease_seconds: float) -> float:
    """Seconds between a batch's own deadline and its lease's end, and again before a takeover."""
    return max(1.0, lease_seconds / 12)


def deadline(renewed_at: float, lease_seconds: float) -> float:
    """The monotonic deadline of a batch whose lease was renewed by a statement sent at `renewed_at`."""
    return renewed_at + lease_seconds - margin(lease_seconds)


class FenceWriter:
    """The launcher's end of one batch's fence: extend its deadline, or revoke it."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        os.set_blocking(fd, False)

    def extend(self, until: float) -> None:
        """Tell the batch it may run until the monotonic time `until`."""
        self._write(until)

    def revoke(self) -> None:
        """Tell the batch its run is no longer ours: it stops at once."""
        self._write(LOST)

    def close(self) -> None:
        """Close the pipe (a batch still running then stops: its launcher is gone)."""
        with contextlib.suppress(OSError):
            os.close(self.fd)

    def _write(self, value: float) -> None:
        # A batch too busy to read fills the pipe (64 KiB: thousands of renewals); its timer
        # then fires at the last deadline it took, which is the safe direction.
        with contextlib.suppress(BlockingIOError, BrokenPipeError, OSError):
            os.write(self.fd, _DEADLINE.pack(value))


class Fence:
    """The batch's end: whether the run is still ours, kept by a thread and a kernel timer."""

    def __init__(self, fd: int, until: float) -> None:
        self.fd = fd
        self.until = until
        self.lost = False

    def still_ours(self) -> bool:
        """True while the lease is renewed and nobody declared the run lost."""
        return not self.lost and time.monotonic() < self.until

    def arm(self) -> Fence:
        """In the batch process, before the job runs: arm the timer and start the watching thread."""
        signal.signal(signal.SIGALRM, signal.SIG_DFL)  # the kernel's default action: end the process
        self._set_timer()
        threading.Thread(target=self._watch, name="fence", daemon=True).start()
        return self

    def _set_timer(self) -> None:
        signal.setitimer(signal.ITIMER_REAL, max(0.001, self.until - time.monotonic()))

    def _watch(self) -> None:
        pending = b""
        while True:
            wait = self.until - _AHEAD - time.monotonic()
            if wait <= 0 or self.lost:
                _stop_group()
            if not readable([self.fd], wait):  # the fd keeps the launcher's number, maybe past 1024
                continue
            data = os.read(self.fd, 4096)
            if not data:  # the launcher is gone: nobody renews the lease or records the outcome
                _stop_group()
            pending += data
            whole = len(pending) - len(pending) % _DEADLINE.size
            values = [v for (v,) in _DEADLINE.iter_unpack(pending[:whole])]
            pending = pending[whole:]
            if LOST in values:
                self.lost = True
            elif values:
                self.until = max(self.until, values[-1])
                self._set_timer()


def _stop_group() -> None:
    """Kill this batch's process group (the batch and everything it started)."""
    os.killpg(os.getpgid(0), signal.SIGKILL)
    os._exit(1)  # unreachable unless the group kill failed
