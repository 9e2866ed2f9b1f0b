"""Whose clock a lease is judged by: the ledger's own where the ledger is shared by a fleet.

A lease written with one host's clock and judged with another host's lets clock skew decide
that a live run is lost. So lease renewals and sweeps pass `now=None` to the ledger, which
resolves it as the store's own time: inside the SQL statement on PostgreSQL (one clock for the
whole fleet), this host's clock on SQLite (one host). An explicit `now` is still honoured,
which keeps the contract tests deterministic on every backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeAlias


@dataclass(frozen=True)
class StoreTime:
    """A moment on the store's own clock: the statement's time plus `offset`, resolved in SQL."""

    offset: timedelta = timedelta(0)

    def __add__(self, other: timedelta) -> StoreTime:
        return StoreTime(self.offset + other)

    def __sub__(self, other: timedelta) -> StoreTime:
        return StoreTime(self.offset - other)


#: A time a ledger statement writes or compares: a bound value, or the store's clock.
Moment: TypeAlias = datetime | StoreTime
