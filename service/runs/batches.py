"""One batch under the launcher: its process, fence, timeout and output, from fork to close."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass

from service.config import Settings
from service.jobs import JobSpec
from service.ledger import Ledger, Run, Status
from service.runs.capture import OutputCapture, Pipes
from service.runs.fencing import Fence, FenceWriter
from service.runs.isolation import BatchProcess
from service.runs.runner import body
from service.runs.spool import Outcome
from service.slots import format_slot

#: A batch killed by one of these after its deadline passed was fenced (its own timer or thread).
_FENCE_SIGNALS = (-signal.SIGKILL, -signal.SIGALRM)


@dataclass
class Batch:
    """A running batch and what the launcher knows about it."""

    run: Run
    spec: JobSpec
    process: BatchProcess
    fence: FenceWriter
    deadline: float
    timeout_at: float
    output: OutputCapture | None = None
    stop_reason: Outcome | None = None
    kill_at: float | None = None
    lost: bool = False

    @property
    def pollable(self) -> bool:
        """True when the batch's end wakes the launcher's select (a pidfd)."""
        return self.process.fileno() is not None

    def fds(self) -> list[int]:
        """What the launcher's select watches for this batch: its end, and its output."""
        pidfd = self.process.fileno()
        found = [pidfd] if pidfd is not None else []
        return found + (self.output.fds() if self.output is not None else [])

    def next_due(self) -> float:
        """When this batch next needs the launcher: its timeout, its kill, its output's flush."""
        due = [self.kill_at or self.timeout_at]
        if self.output is not None and self.output.fds():
            due.append(time.monotonic() + 1.0)
        return min(due)

    def pump_output(self) -> None:
        """Read what the batch wrote; ship it to the run's log when due."""
        if self.output is not None:
            self.output.pump(0)

    def enforce(self, now: float, grace: float) -> None:
        """Stop the batch at its timeout; kill its group when a stop's grace is over."""
        if self.kill_at is not None and now >= self.kill_at:
            self.process.reap_group()
            self.kill_at = now + grace  # again, should something of the group linger
        elif self.kill_at is None and now >= self.timeout_at:
            self.stop_reason = Outcome(Status.TIMED_OUT, f"exceeded its timeout of {self.spec.timeout:g} s")
            self._terminate(now, grace)

    def extend(self, until: float) -> None:
        """The lease was renewed: the batch may run until `until`."""
        self.deadline = until
        self.fence.extend(until)

    def lose(self, now: float, grace: float) -> None:
        """The run is no longer ours: the batch stops now, and its outcome is nobody's to record."""
        self.lost = True
        self.fence.revoke()
        self._terminate(now, grace)

    def interrupt(self, reason: str, now: float, grace: float) -> None:
        """The instance stops: the batch is stopped and recorded `interrupted` (then run again)."""
        if self.stop_reason is None and not self.lost:
            self.stop_reason = Outcome(Status.INTERRUPTED, reason, completed=False)
        if self.kill_at is None:
            self._terminate(now, grace)

    def fenced(self, code: int) -> bool:
        """True when the batch ended by its own fence: killed after its deadline passed."""
        return code in _FENCE_SIGNALS and time.monotonic() >= self.deadline - 1.0

    def close(self) -> str:
        """Kill what the batch left in its group, finish its log, release its fds; the alert excerpt."""
        self.process.reap_group()
        excerpt = ""
        if self.output is not None:
            self.output.finish()  # before the outcome: a reader that sees the run end has its whole log
            excerpt = self.output.excerpt()
        self.fence.close()
        self.process.close()
        return excerpt

    def _terminate(self, now: float, grace: float) -> None:
        self.process.terminate_group()
        self.kill_at = now + grace


def start_batch(settings: Settings, ledger: Ledger, spec: JobSpec, run: Run, until: float) -> Batch:
    """Fork the batch process for a started run, fenced until `until` (monotonic); raises OSError."""
    fence_read, fence_write = os.pipe()
    # The run's output: fds 1 and 2 of the batch become pipes this process reads.
    # Everything the batch inherits from the launcher, but these and its fence, is closed.
    pipes = Pipes.open()
    try:
        process = BatchProcess.start(
            lambda error_fd: body(settings, spec, run, error_fd, Fence(fence_read, until)),
            settings.batch_nice,
            pipes,
            keep=(fence_read,),
            keep_files=ledger_files(ledger),
        )
    except OSError:
        os.close(fence_write)
        raise
    finally:
        os.close(fence_read)
    output = OutputCapture(run.id, ledger, pipes.keep_read_ends())
    return Batch(
        run=run,
        spec=spec,
        process=process,
        fence=FenceWriter(fence_write),
        deadline=until,
        timeout_at=time.monotonic() + spec.timeout,
        output=output,
    )


def ledger_files(ledger: Ledger) -> tuple[str, ...]:
    """The SQLite ledger's file (and its -wal/-shm beside it) as a path prefix; none elsewhere."""
    path = getattr(ledger, "path", None)
    return (os.path.realpath(path),) if isinstance(path, str) else ()


def fields(run: Run) -> dict[str, str]:
    """A run's log fields."""
    return {"run_id": run.id, "job": run.job, "slot": format_slot(run.slot), "attempt": str(run.attempt)}
