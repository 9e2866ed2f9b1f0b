"""The connection budget: an instance holds at most WEB_CONCURRENCY + 1 PostgreSQL connections.

The launcher holds one, for every batch's start, lease and outcome (and, on PostgreSQL, the
instance's lock). Everything else on the instance that connects — the web workers, the keeper,
and batches that read the ledger through `ctx.ledger` — shares WEB_CONCURRENCY *permits*: a
connection is opened only holding one, and the permit goes back when it closes.

A permit is an exclusive `flock` on one of the instance's permit files under RUN_DIR. The kernel
drops it when its process dies, so a crashed worker never keeps one. A process that finds every
permit taken says so (a shared lock on the `wanted` file) while it waits: web workers keep their
connection between requests, but let it go after their request (or within a second, when idle)
as soon as someone waits, so the keeper's sweep gets a connection within a request's time
without its becoming the instance's (WEB_CONCURRENCY + 2)-th.

The shipped gunicorn configuration turns the budget on (LEDGER_CONNECTION_PERMITS, from
WEB_CONCURRENCY); without it, each process connects as it needs (README, Running a fleet).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
import weakref
from pathlib import Path
from typing import Protocol

from service.errors import ConfigError, LedgerUnavailable

#: How many connections the instance's workers, keeper and batches share (the launcher's is apart):
#: service.config reads it as `connection_permits`.
PERMITS_ENV = "LEDGER_CONNECTION_PERMITS"
#: How long a process waits for a permit before it reports the ledger unavailable.
WAIT_SECONDS = 10.0
_POLL_SECONDS = 0.01
#: A wait this long is logged: the instance's connections are too few for what it serves.
SLOW_WAIT_SECONDS = 1.0
log = logging.getLogger("batch_trigger.ledger")

# Permit descriptors open in this process: a forked child closes its copies at once, so a permit
# goes back when its holder lets go, not when the last child that inherited it exits.
_open_permits: set[int] = set()


class Budgeted(Protocol):
    """A ledger that connects under a budget."""

    def let_go_if_wanted(self) -> None:
        """Close this thread's connection (and give its permit back) if another process waits."""


# Ledgers in this process that connect under a budget, for `let_go_where_wanted`.
_holders: weakref.WeakSet[Budgeted] = weakref.WeakSet()


def _close_inherited() -> None:
    for fd in list(_open_permits):
        with contextlib.suppress(OSError):
            os.close(fd)
    _open_permits.clear()


os.register_at_fork(after_in_child=_close_inherited)


class Permit:
    """One held permit: the right to one open connection, until `release`."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd
        _open_permits.add(fd)

    def release(self) -> None:
        """Give the permit back (idempotent; a forked child's inherited copy is never released)."""
        fd, self._fd = self._fd, None
        if fd is not None and fd in _open_permits:
            _open_permits.discard(fd)
            os.close(fd)  # closing the only descriptor drops the lock


class ConnectionBudget:
    """`permits` connections shared by an instance's processes, through files in `directory`."""

    def __init__(self, directory: Path, permits: int, wait: float = WAIT_SECONDS) -> None:
        if permits < 1:
            raise ConfigError(f"{PERMITS_ENV} must be at least 1, got {permits}")
        self.directory = directory
        self.permits = permits
        self.wait = wait
        self._wanted_fd: int | None = None

    def acquire(self) -> Permit:
        """A free permit, waiting up to `wait` seconds (and saying so); LedgerUnavailable after."""
        began = time.monotonic()
        deadline = began + self.wait
        first = os.getpid() % self.permits  # processes try different files first
        waiting: int | None = None
        try:
            while True:
                for n in range(self.permits):
                    permit = self._try(f"permit-{(first + n) % self.permits}")
                    if permit is not None:
                        waited = time.monotonic() - began
                        if waited >= SLOW_WAIT_SECONDS:
                            log.warning(
                                "waited %.1f s for a ledger connection permit (%s)", waited, PERMITS_ENV
                            )
                        return permit
                if waiting is None:
                    waiting = self._open("wanted")
                    fcntl.flock(waiting, fcntl.LOCK_SH)  # held while we wait: holders let go
                if time.monotonic() >= deadline:
                    raise LedgerUnavailable(
                        f"all {self.permits} of this instance's ledger connections stayed in use for"
                        f" {self.wait:g} s ({PERMITS_ENV}; README, Running a fleet)"
                    )
                time.sleep(_POLL_SECONDS)
        except OSError as exc:
            raise LedgerUnavailable(f"connection permits under {self.directory} unusable: {exc}") from exc
        finally:
            if waiting is not None:
                os.close(waiting)

    def wanted(self) -> bool:
        """True while another process of the instance waits for a permit."""
        try:
            if self._wanted_fd is None:
                self._wanted_fd = self._open("wanted")
            fcntl.flock(self._wanted_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        except OSError:
            return False
        fcntl.flock(self._wanted_fd, fcntl.LOCK_UN)
        return False

    def _try(self, name: str) -> Permit | None:
        fd = self._open(name)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        return Permit(fd)

    def _open(self, name: str) -> int:
        path, flags = self.directory / name, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC
        try:
            return os.open(path, flags, 0o600)
        except FileNotFoundError:  # the first use on this instance (or RUN_DIR was emptied)
            self.directory.mkdir(parents=True, exist_ok=True)
            return os.open(path, flags, 0o600)


def for_instance(instance_dir: Path, permits: int) -> ConnectionBudget | None:
    """The budget of `permits` connections (LEDGER_CONNECTION_PERMITS) of the instance whose
    directory is given; None for 0 (no budget)."""
    return ConnectionBudget(instance_dir / "connections", permits) if permits else None


def register(ledger: Budgeted) -> None:
    """Remember a ledger of this process that connects under a budget."""
    _holders.add(ledger)


def let_go_where_wanted() -> None:
    """Close this thread's budgeted connections if another process of the instance waits for a permit.

    Web workers call it between requests (service.web.worker) and after each request.
    """
    for ledger in list(_holders):
        ledger.let_go_if_wanted()
