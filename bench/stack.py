"""What a bench run starts: instances under the shipped gunicorn config, PostgreSQL, tokens, stamps."""

from __future__ import annotations

import contextlib
import secrets
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from service.cli import client
from service.config import Settings
from service.dev.devserver import GUNICORN_APP, ServiceProcess
from service.slots import format_slot
from service.web.auth import mint_token
from tests.support.postgres import PostgresServer, find_bindir

REPO = Path(__file__).resolve().parents[1]
WORKERS = 4  # the shipped default (WEB_CONCURRENCY), for the service and the bare app alike
BARE_APP = "bench.bare:app"


@dataclass(frozen=True)
class Stamp:
    """One line a bench job wrote: what happened, for which slot, when (CLOCK_MONOTONIC), extra."""

    event: str
    job: str
    slot: str
    at: float
    pid: int
    extra: str


class Stack:
    """Owns the bench's processes and files; `close()` stops everything it started, newest first."""

    def __init__(self) -> None:
        self.work = Path(tempfile.mkdtemp(prefix="batch-trigger-bench-"))
        self.secret = secrets.token_urlsafe(36)
        self.settings = Settings.from_env({"TRIGGER_SECRET": self.secret})
        self.stamp_file = self.work / "stamps"
        self._exit = contextlib.ExitStack()
        # Registered first, so it runs last: the work folder goes once every process using it stopped.
        self._exit.callback(shutil.rmtree, self.work, ignore_errors=True)
        self._postgres: PostgresServer | None = None
        self._slots = iter(range(1, 10**9))
        self._base = datetime(2031, 1, 1, tzinfo=UTC) + timedelta(days=secrets.randbelow(3650))

    def close(self) -> None:
        """Stop every instance and server this stack started, and PostgreSQL last."""
        self._exit.close()

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- servers -------------------------------------------------------------------------------

    def postgres_url(self) -> str:
        """A fresh database on this stack's PostgreSQL server (the test suite's, started on first use)."""
        if self._postgres is None:
            server = PostgresServer(find_bindir())
            self._exit.callback(server.destroy)
            server.start()
            self._postgres = server
        return self._postgres.create_database()

    def postgres_server_url(self) -> str:
        """The URL of the server's own `postgres` database (after postgres_url started it)."""
        assert self._postgres is not None
        return self._postgres.url()

    def drop_postgres(self, url: str) -> None:
        """Drop a database that postgres_url made, once nothing uses it (its disk space goes now)."""
        if self._postgres is not None:
            self._postgres.drop_database(url)

    def postgres_version(self) -> str:
        """The server's version string (after postgres_url started it)."""
        if self._postgres is None:
            return "-"
        with psycopg.connect(self._postgres.url(), autocommit=True) as conn:
            shown = [conn.execute(f"SHOW {name}").fetchone() for name in ("server_version", "fsync")]
        version, fsync = (row[0] if row else "?" for row in shown)
        return f"{version} (fsync={fsync}: the test server's setting; commits stay synchronous)"

    def instance(
        self, name: str, ledger_url: str | None = None, *, app: str = GUNICORN_APP
    ) -> ServiceProcess:
        """Start gunicorn with the shipped config serving `app`, on its own ledger unless one is given."""
        env = {
            "LEDGER_URL": ledger_url or f"sqlite:///{self.work / name}.db",
            "TRIGGER_SECRET": self.secret,
            "BATCH_MODULES": "bench.jobs",
            "BENCH_STAMP_DIR": str(self.work),
            "INSTANCE_ID": name,
            "ARTEFACT_DIR": str(self.work / "artefacts"),
            "RUN_DIR": str(self.work / "run" / name),
            "DRAIN_NOTICE_SECONDS": "0",
            "DRAIN_GRACE_SECONDS": "5",
            "KILL_GRACE_SECONDS": "1",
            "PYTHONPATH": str(REPO),
        }
        process = ServiceProcess(env, workers=WORKERS, log_path=self.work / f"{name}.log", app=app)
        process.start(timeout=60)
        self._exit.callback(process.stop)
        return process

    def enter(self, context: contextlib.AbstractContextManager[Any]) -> Any:
        """Enter another context (nginx, ...) that closes with the stack."""
        return self._exit.enter_context(context)

    # --- tokens and slots ----------------------------------------------------------------------

    def slot(self) -> datetime:
        """A slot no other measurement of this run uses."""
        return self._base + timedelta(minutes=next(self._slots))

    def mint(self, job: str, slot: datetime, **kwargs: Any) -> str:
        """A fresh single-use trigger token for (job, slot)."""
        return mint_token(self.settings, job, slot=slot, lifetime=300, **kwargs)

    def token_file(self, job: str, count: int, *, same_slot: datetime | None = None) -> Path:
        """`count` fresh tokens, one a line: each for a new slot, or all for `same_slot`."""
        path = self.work / f"tokens-{secrets.token_hex(4)}.txt"
        with path.open("w") as out:
            for _ in range(count):
                out.write(self.mint(job, same_slot or self.slot()) + "\n")
        return path

    def read_token(self) -> str:
        """A token for the read endpoints."""
        return mint_token(self.settings, "read", lifetime=300)

    # --- observing the runs --------------------------------------------------------------------

    def stamps(self) -> list[Stamp]:
        """Every line the bench jobs wrote so far, on any instance."""
        if not self.stamp_file.exists():
            return []
        found = []
        for line in self.stamp_file.read_text().splitlines():
            event, job, slot, at, pid, *extra = line.split(" ")
            found.append(Stamp(event, job, slot, float(at), int(pid), " ".join(extra)))
        return found

    def settle(self, url: str, job: str, timeout: float = 600.0) -> None:
        """Wait until no run of `job` is accepted or running (batches of a load run finished).

        A new-claims run on SQLite leaves ~3,000 batches, which take a loaded 2-core machine about
        two minutes to start and finish: the wait is generous, and is not part of any figure.
        """
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            busy = [
                client.list_runs(url, self.read_token(), job=job, status=status, limit=1)
                for status in ("accepted", "running")
            ]
            if not any(busy):
                return
            time.sleep(0.25)
        raise RuntimeError(f"runs of {job} still active after {timeout:.0f} s")


def slot_text(slot: datetime) -> str:
    """The slot as the API and the stamps show it."""
    return format_slot(slot)
