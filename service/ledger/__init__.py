"""The run ledger: where (job, slot) claims, leases and outcomes live."""

from __future__ import annotations

from urllib.parse import urlsplit

from service.errors import ConfigError
from service.ledger.base import Ledger
from service.ledger.records import ACTIVE, FAILURES, Claim, ClaimRequest, Pause, Run, Status

__all__ = ["ACTIVE", "FAILURES", "Claim", "ClaimRequest", "Ledger", "Pause", "Run", "Status", "open_ledger"]


def open_ledger(url: str) -> Ledger:
    """The ledger backend named by a `LEDGER_URL`; drivers of other backends stay unimported."""
    scheme = urlsplit(url).scheme.lower()
    if scheme == "sqlite":
        from service.ledger.sqlite import SqliteLedger

        path = url[len("sqlite://") :]
        # sqlite:///relative.db and sqlite:////absolute.db, as in SQLAlchemy.
        path = path[1:] if path.startswith("/") else path
        if not path:
            raise ConfigError("LEDGER_URL sqlite:/// needs a file path, e.g. sqlite:///batch-trigger.db")
        return SqliteLedger(path)
    if scheme in ("postgresql", "postgres"):
        try:
            from service.ledger.postgres import PostgresLedger  # type: ignore[import-not-found,unused-ignore]
        except ImportError as exc:
            raise ConfigError(f"LEDGER_URL is PostgreSQL but its backend cannot load: {exc}") from None
        return PostgresLedger(url)  # type: ignore[no-any-return,unused-ignore]
    raise ConfigError(f"LEDGER_URL scheme {scheme!r} is not supported")
