"""The launcher's liveness lock on PostgreSQL: held by its session, taken back when the session ends.

Another instance's keeper abandons this instance's runs once the lock stayed free for
`service.ops.keeper.LAUNCHER_GONE_AFTER`, but never within `RESTART_GRACE` of a database restart
(every lock is free then). So a launcher that lost its session takes the lock back at once and,
if it cannot, stops its batches `LOSS_LIMIT` after the loss, or after the server last answered
that it is down or starting, whichever is later: before any keeper may judge. While the server
is down or restarting nobody can judge, and the batches go on (their leases and fences still
bound them).
"""

from __future__ import annotations

import logging
import time

from service.errors import LedgerUnavailable
from service.ledger import Ledger

log = logging.getLogger("batch_trigger.runner")
#: Without its lock this long, while the database answers, a launcher stops its batches.
LOSS_LIMIT = 2.0
# What a PostgreSQL server that is down or restarting answers (nobody can judge a lock then).
_DATABASE_DOWN = ("connection refused", "starting up", "shutting down", "not yet accepting", "recovery mode")


class LauncherLock:
    """Whether this launcher holds its instance's lock, and since when it does not."""

    def __init__(self, ledger: Ledger, instance: str, enabled: bool) -> None:
        self.ledger = ledger
        self.instance = instance
        self.enabled = enabled
        self.lost_at: float | None = None
        self._down_at: float | None = None  # the last answer, since the loss, of a server down or starting
        self._refusal = ""  # why the last attempt to take the lock back failed
        self._fenced = False  # must_fence said so since the loss (said once in the log)

    def session_fd(self) -> int | None:
        """The locked session's socket while the lock is held (readable when the server ends it)."""
        return self.ledger.launcher_session_fd() if self.enabled and self.lost_at is None else None

    def held(self) -> bool:
        """Take (or keep) the lock; True when this launcher may start or renew anything."""
        if not self.enabled:
            return True
        try:
            held = self.ledger.hold_launcher_lock(self.instance)
        except LedgerUnavailable as exc:
            held = False
            self._refusal = exc.message
            if any(sign in exc.message.lower() for sign in _DATABASE_DOWN):
                self._down_at = time.monotonic()
        else:
            if not held:
                self._refusal = "another session holds the lock"
                log.error("another launcher holds this INSTANCE_ID's lock: is the id unique?")
        if held:
            if self.lost_at is not None:
                log.info("launcher lock held again")
            self.lost_at = self._down_at = None
            self._fenced = False
        elif self.lost_at is None:
            log.warning("launcher lock lost (its database session ended); taking it back")
            self.lost_at = time.monotonic()
        return held

    def must_fence(self) -> bool:
        """Try again; True when the lock stayed lost LOSS_LIMIT past the loss, and past the last
        sign of the server being down or starting (a server starting up answers in several ways,
        "server closed the connection unexpectedly" among them: one such answer decides nothing)."""
        if self.lost_at is None or self.held():
            return False
        since = max(self.lost_at, self._down_at or self.lost_at)
        fence = time.monotonic() - since >= LOSS_LIMIT
        if fence and not self._fenced:
            self._fenced = True
            log.warning(
                "launcher lock not taken back %.1f s after its loss (last answer: %s): stopping this"
                " instance's batches before another instance may take their runs over",
                time.monotonic() - self.lost_at,
                self._refusal[:300],
            )
        return fence
