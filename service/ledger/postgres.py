"""PostgreSQL ledger: the shared store of a fleet, one connection per process and thread."""

from __future__ import annotations

import hashlib
import select
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from service.errors import ConfigError, LedgerUnavailable
from service.ledger.base import Ledger
from service.ledger.budget import ConnectionBudget, Permit
from service.ledger.budget import register as budget_register
from service.ledger.postgres_schema import MIGRATIONS, SCHEMA_VERSION
from service.ledger.records import Run
from service.ledger.sql import COLUMNS

# Advisory locks are one namespace per database; the first key keeps ours apart from other apps'.
_LOCK_SPACE = 0x62745F6C  # "bt_l"
_MIGRATION_LOCK = 0
# A claim that waits longer than this for another instance's claim of the same job gives up
# (503, the trigger retries) instead of hanging a web worker; a claim holds it for milliseconds.
_CLAIM_LOCK_TIMEOUT = "10s"
# A process stopped (SIGSTOP, a frozen VM) inside a claim must not hold the job's lock forever.
_CLAIM_IDLE_TIMEOUT = "60s"
# Defaults a LEDGER_URL may override: fail fast, and notice a dead peer instead of waiting for
# the kernel's TCP retransmission timeout (about 15 minutes).
_CONNECT_DEFAULTS = {
    "connect_timeout": "5",
    "keepalives": "1",
    "keepalives_idle": "30",
    "keepalives_interval": "10",
    "keepalives_count": "3",
    "tcp_user_timeout": "30000",
    "application_name": "batch-trigger",
}


class PostgresLedger(Ledger):
    """The ledger in a PostgreSQL database; claims of one job serialise across the fleet."""

    # Leases are written and judged on the database's clock, one for the whole fleet: an instance
    # whose clock is off cannot abandon a live run (service.ledger.clock). The statement's start,
    # not clock_timestamp(): every time one statement writes is the same.
    _store_now_sql = "statement_timestamp()"

    def __init__(self, url: str) -> None:
        super().__init__()
        url, pool_mode = _pool_mode(url)
        #: Behind a transaction pooler (PgBouncer pool_mode=transaction, RDS Proxy), each transaction
        #: may run on another server session: the ledger then keeps nothing in a session — no
        #: server-side prepared statements, no SET, no session advisory lock (README, Running a fleet).
        self.transaction_pooling = pool_mode == "transaction"
        try:
            params = conninfo_to_dict(url)
        except psycopg.Error as exc:
            detail = str(exc).replace(urlsplit(url).password or "\0", "***")
            raise ConfigError(f"LEDGER_URL is not a valid PostgreSQL URL: {detail}") from None
        for name, value in _CONNECT_DEFAULTS.items():
            params.setdefault(name, value)
        self._conninfo = make_conninfo("", **params)
        self._password = str(params.get("password") or "")
        # Where errors say the ledger is: enough to diagnose, never the password.
        host, port = params.get("host") or "localhost", params.get("port") or 5432
        self._target = f"{host}:{port}/{params.get('dbname') or ''}"
        self._budget: ConnectionBudget | None = None
        self._brief = False

    def share_connections(self, budget: ConnectionBudget | None, *, brief: bool = False) -> None:
        """Connect only while holding one of the instance's permits (service.ledger.budget).

        `brief`: let go after every statement outside a claim (a batch, which reads rarely and may
        run for hours, must not sit on a permit the web workers need).
        """
        self._budget, self._brief = budget, brief
        if budget is not None:
            budget_register(self)

    def let_go_if_wanted(self) -> None:
        """Close this thread's connection and give its permit back if another process waits for one."""
        state = self._state()
        if (
            self._budget is not None
            and getattr(state, "permit", None) is not None
            and getattr(state, "transaction", None) is None
            and self._budget.wanted()
        ):
            self.close()

    def close(self) -> None:
        """Close this thread's connection; its permit, if it held one, goes back."""
        permit: Permit | None = getattr(self._state(), "permit", None)
        super().close()
        if permit is not None:
            permit.release()

    def ensure_schema(self) -> None:
        """Create or migrate the tables under an advisory lock; safe when instances start at once."""
        conn = self._connection()
        with self._errors(), conn.transaction():
            # Concurrent CREATE ... IF NOT EXISTS can still collide in the catalogue; the lock
            # makes instances migrate one after another. It ends with the transaction, even if
            # this process dies mid-migration.
            conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (_LOCK_SPACE, _MIGRATION_LOCK))
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
            current = row[0] if row and row[0] is not None else 0
            # A newer schema written by a newer release is left alone: migrations only add.
            for version in range(current + 1, SCHEMA_VERSION + 1):
                conn.execute(MIGRATIONS[version])
            if current < SCHEMA_VERSION:
                conn.execute("DELETE FROM schema_version")
                conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (SCHEMA_VERSION,))

    @contextmanager
    def _claim_transaction(self, job: str) -> Iterator[None]:
        # The overlap check reads other slots of the job, which no uniqueness constraint covers:
        # a transaction-scoped advisory lock per job makes claims of one job take turns across
        # every instance. READ COMMITTED (set on connect) gives each statement a fresh snapshot,
        # so what the previous holder committed is visible once the lock is ours.
        conn = self._connection()
        with self._errors(), conn.transaction():
            conn.execute("SELECT set_config('lock_timeout', %s, true)", (_CLAIM_LOCK_TIMEOUT,))
            conn.execute(
                "SELECT set_config('idle_in_transaction_session_timeout', %s, true)", (_CLAIM_IDLE_TIMEOUT,)
            )
            conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (_LOCK_SPACE, _job_key(job)))
            state = self._state()
            state.transaction = conn
            try:
                yield
            finally:
                state.transaction = None

    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        # Inside a claim, statements must run on the transaction's connection, and never on a
        # fresh one should it break: that would silently run them outside the lock.
        transaction = getattr(self._state(), "transaction", None)
        conn = transaction or self._connection()
        try:
            with self._errors(), conn.cursor() as cursor:
                cursor.execute(_pyformat(sql), tuple(args))
                return cursor.fetchall() if cursor.description is not None else []
        finally:
            if self._brief and transaction is None:
                self.close()

    def hold_launcher_lock(self, instance: str) -> bool:
        """Take (or keep) the instance's session advisory lock: freed the moment this session ends."""
        if self.transaction_pooling:
            return True  # no session to hold a lock in: the lease alone judges this instance
        conn = self._connection()  # a new session if the server ended the last one: lock again
        state = self._state()
        if getattr(state, "launcher_lock", None) is conn:
            return True
        with self._errors():
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (launcher_key(instance),)).fetchone()
        if row is not None and row[0]:
            state.launcher_lock = conn
            return True
        return False

    def launcher_session_fd(self) -> int | None:
        """The socket of the session that holds the launcher lock, if one does."""
        conn = getattr(self._state(), "launcher_lock", None)
        if conn is None or conn.closed:
            return None
        fd: int = conn.pgconn.socket
        return fd

    def launcher_locks(self, grace: timedelta) -> dict[str, bool | None]:
        """Per instance with running runs: launcher lock held, free, or None within `grace` of a restart."""
        if self.transaction_pooling:
            return {}  # pooled sessions hold no launcher locks: none of them is anyone's to judge
        rows = self._query(
            f"SELECT instance, bool_or({_LOCK_FREE}), bool_or({_JUDGEABLE}) FROM runs"
            " WHERE status = 'running' AND instance IS NOT NULL GROUP BY instance",
            (grace.total_seconds(),),
        )
        # A held lock proves its instance alive at any time; a free one is judged only past `grace`.
        locks: dict[str, bool | None] = {}
        for instance, free, judgeable in rows:
            locks[instance] = True if not free else False if judgeable else None
        return locks

    def abandon_without_launcher(
        self, instances: Sequence[str], now: datetime, grace: timedelta
    ) -> list[Run]:
        """Abandon the running runs of these instances, in one statement that checks the lock again."""
        if not instances:
            return []
        marks = ", ".join("?" for _ in instances)
        rows = self._query(
            "UPDATE runs SET status = 'abandoned', finished_at = ?,"
            " error = 'instance ' || instance || ' is gone: its launcher''s database session ended'"
            f" WHERE status = 'running' AND instance IN ({marks}) AND {_LAUNCHER_GONE}"
            f" RETURNING {', '.join(COLUMNS)}",
            (self._encode_time(now), *instances, grace.total_seconds()),
        )
        return self._decoded(rows)

    def _encode_time(self, value: datetime) -> datetime:
        return value.astimezone(UTC)

    def _decode_time(self, value: Any) -> datetime:
        # timestamptz arrives aware in the session's zone (UTC); normalise to the one UTC tzinfo.
        moment: datetime = value
        return moment.astimezone(UTC)

    def _connection(self) -> psycopg.Connection[Any]:
        state = self._state()
        conn: psycopg.Connection[Any] | None = getattr(state, "conn", None)
        if conn is not None and (conn.closed or _went_away(conn)):
            conn.close()
            conn = None
        if conn is None:
            # Under a budget, a connection is opened only holding a permit (kept across reconnects).
            if self._budget is not None and getattr(state, "permit", None) is None:
                state.permit = self._budget.acquire()
            try:
                conn = self._connect()
            except BaseException:
                if getattr(state, "permit", None) is not None:
                    state.permit.release()  # no connection, no permit: the database is down
                    state.permit = None
                raise
            state.conn = conn
        return conn

    def _connect(self) -> psycopg.Connection[Any]:
        with self._errors():
            # psycopg prepares a statement on the server after 5 runs; a pooler may hand the
            # next run to a session that never saw it (PgBouncer < 1.21).
            conn = psycopg.connect(
                self._conninfo, autocommit=True, prepare_threshold=None if self.transaction_pooling else 5
            )
            conn.isolation_level = psycopg.IsolationLevel.READ_COMMITTED
            if not self.transaction_pooling:
                # Times are normalised to UTC when read anyway; this only spares a conversion.
                conn.execute("SET TIME ZONE 'UTC'")
        return conn

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except psycopg.Error as exc:
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if self._password:
                detail = detail.replace(self._password, "***")
            raise LedgerUnavailable(f"PostgreSQL ledger unavailable ({self._target}): {detail}") from exc


def _pool_mode(url: str) -> tuple[str, str]:
    """LEDGER_URL without our own `pool_mode` parameter (libpq knows no such option), and its value."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    modes = [value for name, value in query if name == "pool_mode"]
    mode = modes[-1] if modes else "session"
    if mode not in ("session", "transaction"):
        raise ConfigError(f"LEDGER_URL pool_mode must be 'session' or 'transaction', not {mode[:32]!r}")
    rest = urlencode([(name, value) for name, value in query if name != "pool_mode"])
    return parts._replace(query=rest).geturl(), mode


def launcher_key(instance: str) -> int:
    """The instance's launcher lock: a signed 64-bit key, the same as `_LAUNCHER_KEY` computes in SQL."""
    digest = hashlib.md5(f"batch-trigger launcher:{instance}".encode(), usedforsecurity=False).hexdigest()
    return int.from_bytes(bytes.fromhex(digest[:16]), "big", signed=True)


_LAUNCHER_KEY = "('x' || substr(md5('batch-trigger launcher:' || instance), 1, 16))::bit(64)::bigint"
# A one-key advisory lock shows in pg_locks as classid = high 32 bits, objid = low 32 bits,
# objsubid = 1. Right after the server (re)starts every lock is free: no judgement until the
# launchers had `grace` seconds to reconnect and lock again.
_LOCK_FREE = (
    "NOT EXISTS (SELECT 1 FROM pg_locks AS l WHERE l.locktype = 'advisory' AND l.granted"
    " AND l.objsubid = 1 AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    f" AND l.classid = (({_LAUNCHER_KEY} >> 32) & 4294967295)::oid"
    f" AND l.objid = ({_LAUNCHER_KEY} & 4294967295)::oid)"
)
_JUDGEABLE = "pg_postmaster_start_time() < now() - make_interval(secs => ?)"
_LAUNCHER_GONE = f"{_LOCK_FREE} AND {_JUDGEABLE}"


def _went_away(conn: psycopg.Connection[Any]) -> bool:
    """True when an idle connection's socket has something to read: the server ended the session."""
    # An idle autocommit session receives nothing unless the server is terminating it (restart,
    # failover, pg_terminate_backend); without this check the first call after a database restart
    # would fail on the dead connection although the database is back.
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        return False
    try:
        # poll, not select: select cannot watch descriptors above 1023, common in a busy worker.
        poller = select.poll()
        poller.register(conn.pgconn.socket, select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError, psycopg.Error):
        return True


def _job_key(job: str) -> int:
    """A stable signed 32-bit lock key for a job name (collisions only serialise two jobs' claims)."""
    return int.from_bytes(hashlib.blake2b(job.encode(), digest_size=4).digest(), "big", signed=True)


@lru_cache(maxsize=256)
def _pyformat(sql: str) -> str:
    """Turn `?` placeholders outside quotes and comments into psycopg's `%s`; escape literal `%`."""
    out: list[str] = []
    quote: str | None = None
    i = 0
    while i < len(sql):
        char = sql[i]
        if char == "%":
            out.append("%%")  # psycopg reads `%` everywhere, even inside string literals
        elif quote is not None:
            out.append(char)
            if char == quote:
                quote = None  # a doubled quote ('') just closes and reopens: still correct
        elif char in ("'", '"'):
            quote = char
            out.append(char)
        elif sql.startswith("--", i):
            end = sql.find("\n", i)
            end = len(sql) if end < 0 else end
            out.append(sql[i:end].replace("%", "%%"))
            i = end
            continue
        elif char == "?":
            out.append("%s")
        else:
            out.append(char)
        i += 1
    return "".join(out)
