"""PostgresBroker: the Broker protocol on one PostgreSQL table.

Short statements run on a small ``psycopg_pool.ConnectionPool`` of autocommit
connections (every broker operation is a single statement, or two pipelined
ones for claim, so each is one round trip and its own transaction). Wake-ups
come from one dedicated LISTEN connection (see ``_listener``), opened only
once somebody subscribes. psycopg errors are translated to ``BrokerError`` at
this boundary. See docs/postgres.md.
"""

from __future__ import annotations

import itertools
import math
import os
import threading
import time
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime
from typing import Any

import msgspec
import psycopg
import psycopg_pool
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import tuple_row

from taskmaster_core import (
    BrokerBase,
    BrokerClosedError,
    BrokerError,
    ClaimedJob,
    ConfigurationError,
    JobInfo,
    JobState,
    Lease,
    NewJob,
    QueueStats,
    Settlement,
    Subscription,
    WakeCallback,
    check_new_jobs,
)

from . import _schema
from ._dsn import (
    check_options,
    describe_dsn,
    dsn_connect_timeout,
    one_line,
    turned_away,
)
from ._listener import Listener, NullSubscription
from ._names import TableNames
from ._sql import RECLAIM_BATCH, STAGE_TYPES, Statements

__all__ = ["PostgresBroker"]

_SETTLE_KINDS = frozenset({"ack", "fail", "retry"})
_broker_numbers = itertools.count(1)
_json_encode = msgspec.json.Encoder().encode

COPY_THRESHOLD = 64
"""Batches of at least this many jobs (without dedup keys) are put by COPY."""


def _text(value: str | None) -> str | None:
    """Postgres text cannot hold NUL; error messages may contain it."""
    return None if value is None else value.replace("\x00", "\\x00")


def _headers(headers: dict[str, str] | None) -> str | None:
    return _text(_json_encode(headers).decode()) if headers else None


def _one_params(job: NewJob) -> dict[str, Any]:
    return {
        "queue": job.queue,
        "payload": job.payload,
        "serializer": job.serializer,
        "priority": job.priority,
        "delay": float(job.delay),
        "run_at": None if job.run_at is None else float(job.run_at),
        "max_attempts": job.max_attempts,
        "dedup_key": job.dedup_key,
        "headers": _headers(job.headers),
    }


def _put_params(jobs: Sequence[NewJob]) -> dict[str, list[Any]]:
    return {
        "queues": [j.queue for j in jobs],
        "payloads": [j.payload for j in jobs],
        "serializers": [j.serializer for j in jobs],
        "priorities": [j.priority for j in jobs],
        "delays": [float(j.delay) for j in jobs],
        "run_ats": [None if j.run_at is None else float(j.run_at) for j in jobs],
        "max_attempts": [j.max_attempts for j in jobs],
        "dedup_keys": [j.dedup_key for j in jobs],
        "headers": [_headers(j.headers) for j in jobs],
    }


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(UTC)


class PostgresBroker(BrokerBase):
    """Jobs in one PostgreSQL table; see the module docstring and docs/postgres.md.

    ``listen=False`` is the polling-only mode for PgBouncer in transaction
    pooling mode: ``subscribe`` works but never calls back, consumers poll.
    ``prepare_threshold`` is psycopg's (executions before a statement is
    prepared server-side); ``None`` disables prepared statements for poolers
    that cannot carry them. ``reclaim_interval``: a claim also looks for
    expired leases at most this often (seconds; 0 = on every claim), so a
    dead worker's job comes back within ``lease + reclaim_interval``.
    ``async_commit``: claims, outcomes and lease changes commit with
    ``synchronous_commit = off`` (a server crash may forget the last fraction
    of a second of them: those jobs run again, none is lost); puts and
    operator commands always commit synchronously. ``connect_timeout``
    (seconds) bounds connecting and retrying an unreachable server, and
    waiting for a pooled connection; ``None`` takes the DSN's own
    ``connect_timeout`` (or ``PGCONNECT_TIMEOUT``), else 10.
    ``application_name`` (shown in ``pg_stat_activity``): ``None`` takes the
    DSN's (or ``PGAPPNAME``), else ``taskmaster/<pid>/<n>``.
    """

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = "public",
        table: str = "taskmaster_jobs",
        keep_done: bool = False,
        listen: bool = True,
        pool_min_size: int = 1,
        pool_max_size: int = 4,
        statement_timeout: float | None = None,
        connect_timeout: float | None = None,
        application_name: str | None = None,
        prepare_threshold: int | None = 5,
        max_reconnect_backoff: float = 5.0,
        reclaim_interval: float = 1.0,
        async_commit: bool = True,
    ) -> None:
        if not isinstance(dsn, str) or not dsn:
            raise ConfigurationError(f"dsn must be a non-empty string, got {dsn!r}")
        try:
            params = conninfo_to_dict(dsn)
        except psycopg.Error as exc:
            raise ConfigurationError(f"invalid PostgreSQL DSN: {one_line(exc)}") from None
        check_options(params)
        if connect_timeout is None:
            connect_timeout = dsn_connect_timeout(
                params.get("connect_timeout") or os.environ.get("PGCONNECT_TIMEOUT")
            )
        if not 0 < pool_min_size <= pool_max_size:
            raise ConfigurationError(
                f"need 0 < pool_min_size <= pool_max_size, got {pool_min_size}, {pool_max_size}"
            )
        if statement_timeout is not None and statement_timeout <= 0:
            raise ConfigurationError("statement_timeout must be positive or None")
        if connect_timeout <= 0:
            raise ConfigurationError("connect_timeout must be positive")
        self._dsn = dsn
        self.names = TableNames(schema, table)
        self.keep_done = keep_done
        self.listen = listen
        self._pool_min_size = pool_min_size
        self._pool_max_size = pool_max_size
        self._statement_timeout = statement_timeout
        self._connect_timeout = connect_timeout
        self._max_backoff = max_reconnect_backoff
        self.application_name = (
            application_name
            or params.get("application_name")
            or os.environ.get("PGAPPNAME")
            or f"taskmaster/{os.getpid()}/{next(_broker_numbers)}"
        )
        self._connect_kwargs: dict[str, Any] = {
            "application_name": self.application_name,
            "connect_timeout": max(1, round(connect_timeout)),
        }
        self._prepare_threshold = prepare_threshold
        if reclaim_interval < 0:
            raise ConfigurationError("reclaim_interval must be >= 0 seconds")
        self.reclaim_interval = reclaim_interval
        self.async_commit = async_commit
        # When each set of queues (as claimed together) is next swept: per set,
        # because a sweep covers only the queues of the claim that makes it.
        self._next_reclaim: dict[tuple[str, ...], float] = {}
        self._sql = Statements(self.names, keep_done=keep_done, async_commit=async_commit)
        self._lock = threading.Lock()
        self._pool: psycopg_pool.ConnectionPool[psycopg.Connection[Any]] | None = None
        self._listener: Listener | None = None
        self._put_lock = threading.Lock()
        self._put_conn: psycopg.Connection[Any] | None = None

    def __repr__(self) -> str:
        state = "open" if self._pool is not None else "closed"
        return f"<PostgresBroker {describe_dsn(self._dsn)} {self.names.display} {state}>"

    # -- lifecycle --------------------------------------------------------------

    def open(self) -> None:
        with self._lock:
            if self._pool is not None:
                return
            self._first_connection()
            pool: psycopg_pool.ConnectionPool[psycopg.Connection[Any]] = (
                psycopg_pool.ConnectionPool(
                    self._dsn,
                    min_size=self._pool_min_size,
                    max_size=self._pool_max_size,
                    kwargs={
                        **self._connect_kwargs,
                        "autocommit": True,
                        "prepare_threshold": self._prepare_threshold,
                    },
                    configure=self._configure,
                    open=False,
                    name=f"taskmaster-{self.application_name}",
                )
            )
            try:
                pool.open(wait=True, timeout=self._connect_timeout)
            except psycopg_pool.PoolTimeout as exc:
                pool.close()
                raise BrokerError(
                    f"could not connect to PostgreSQL at {describe_dsn(self._dsn)} "
                    f"within {self._connect_timeout:g}s (see the log for the driver's error)"
                ) from exc
            self._pool = pool
            if self.listen:
                self._listener = Listener(
                    self._dsn,
                    self.names.channel,
                    connect_kwargs=self._connect_kwargs,
                    ready_timeout=self._connect_timeout,
                    max_backoff=self._max_backoff,
                    describe=lambda: describe_dsn(self._dsn),
                )

    def _first_connection(self) -> None:
        """Connect once, directly, before starting the pool, retrying for up
        to ``connect_timeout`` while the server is unreachable or starting up:
        so that a database that turns us away (no such database, wrong
        password) is reported at once with the server's own reason, not as a
        bare pool timeout."""
        deadline = time.monotonic() + self._connect_timeout
        pause = 0.05
        while True:
            remaining = deadline - time.monotonic()
            kwargs = {**self._connect_kwargs, "connect_timeout": max(1, math.ceil(remaining))}
            try:
                psycopg.connect(self._dsn, **kwargs).close()
                return
            except psycopg.Error as exc:
                if time.monotonic() + pause >= deadline or turned_away(exc):
                    raise BrokerError(
                        f"could not connect to PostgreSQL at {describe_dsn(self._dsn)}: "
                        f"{one_line(exc)}"
                    ) from exc
            time.sleep(pause)
            pause = min(pause * 2, 1.0)

    def _configure(self, conn: psycopg.Connection[Any]) -> None:
        # JIT compilation pays off for long analytical queries, never for a job
        # queue's short statements: on a 10,000-job put it added ~400 ms.
        timeout = (
            "0" if self._statement_timeout is None else f"{round(self._statement_timeout * 1000)}ms"
        )
        conn.execute(
            "SELECT set_config('jit', 'off', false), set_config('statement_timeout', %s, false)",
            [timeout],
        )

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
            listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        with self._put_lock:
            held, self._put_conn = self._put_conn, None
        if pool is not None:
            if held is not None:
                pool.putconn(held)
            pool.close()

    @contextmanager
    def _put_connection(self) -> Iterator[psycopg.Connection[Any]]:
        """The connection for a put: the one kept for puts when no other put is
        using it, else any pooled connection. psycopg_pool hands connections
        out round-robin, and a put from a process whose pool has grown (a
        consumer ran) would visit every server backend in turn; keeping one
        warm made one-at-a-time puts ~20% faster here."""
        if not self._put_lock.acquire(blocking=False):
            with self._connection("put") as pooled:
                yield pooled
            return
        try:
            pool = self._pool
            if pool is None:
                raise BrokerClosedError("put: the broker is not open")
            kept = self._put_conn
            if kept is not None and (kept.closed or kept.broken):
                self._put_conn = None
                pool.putconn(kept)  # the pool discards a broken connection
                kept = None
            if kept is not None:
                conn = kept
            else:
                try:
                    conn = self._put_conn = pool.getconn(timeout=self._connect_timeout)
                except psycopg_pool.PoolClosed as exc:
                    raise BrokerClosedError("put: the broker is closed") from exc
                except psycopg_pool.PoolTimeout as exc:
                    raise BrokerError(
                        f"put failed on {describe_dsn(self._dsn)}: no connection within "
                        f"{self._connect_timeout:g}s"
                    ) from exc
            try:
                yield conn
            except psycopg.Error as exc:
                if conn.broken or conn.closed:
                    self._put_conn = None
                    pool.putconn(conn)
                raise BrokerError(f"put failed on {describe_dsn(self._dsn)}: {exc}") from exc
        finally:
            self._put_lock.release()

    @contextmanager
    def _connection(self, action: str) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection, with psycopg errors translated to BrokerError."""
        pool = self._pool
        if pool is None:
            raise BrokerClosedError(f"{action}: the broker is not open")
        try:
            with pool.connection(timeout=self._connect_timeout) as conn:
                yield conn
        except psycopg_pool.PoolClosed as exc:
            raise BrokerClosedError(f"{action}: the broker is closed") from exc
        except psycopg.Error as exc:
            raise BrokerError(f"{action} failed on {describe_dsn(self._dsn)}: {exc}") from exc

    # -- schema -----------------------------------------------------------------

    def migrate(self) -> None:
        with self._connection("migrate") as conn:
            _schema.migrate(conn, self.names)

    def migration_sql(self) -> list[str]:
        """The statements :meth:`migrate` would run now, as text, without
        running them (empty when the table is up to date)."""
        with self._connection("migrate --dry-run") as conn:
            return _schema.plan(conn, self.names)

    def create_jobs_table(self) -> None:
        """Create (or upgrade) the jobs table: the same as :meth:`migrate`."""
        self.migrate()

    def drop_jobs_table(self) -> None:
        """Drop the jobs table, its trigger function and version records."""
        with self._connection("drop_jobs_table") as conn:
            _schema.drop(conn, self.names)

    def schema_version(self) -> int:
        """The applied schema version (0 when the table does not exist)."""
        with self._connection("schema_version") as conn, conn.transaction():
            return _schema.applied_version(conn, self.names)

    # -- putting ----------------------------------------------------------------

    def put(self, jobs: Sequence[NewJob], *, connection: Any = None) -> list[int | None]:
        if connection is not None and not isinstance(connection, psycopg.Connection):
            raise ConfigurationError(
                f"connection must be a psycopg.Connection (sync), got {type(connection).__name__}"
            )
        if self._pool is None:
            raise BrokerClosedError("put: the broker is not open")
        if not jobs:
            return []
        check_new_jobs(jobs)
        if connection is None:
            with self._put_connection() as conn:
                return self._put_on(conn, jobs, own=True)
        try:  # the caller's transaction decides: no commit here
            return self._put_on(connection, jobs, own=False)
        except psycopg.Error as exc:
            raise BrokerError(f"put failed on the caller's connection: {exc}") from exc

    def _put_on(
        self, conn: psycopg.Connection[Any], jobs: Sequence[NewJob], *, own: bool
    ) -> list[int | None]:
        """Put on ``conn`` by the cheapest route for this batch: one row
        (scalar parameters), a large batch without dedup keys (binary COPY),
        anything else (arrays through unnest, which aligns dedup skips)."""
        with conn.cursor(row_factory=tuple_row) as cur:
            if len(jobs) == 1:
                row = cur.execute(self._sql.put_one, _one_params(jobs[0])).fetchone()
                return [None if row is None else row[0]]
            if len(jobs) >= COPY_THRESHOLD and all(j.dedup_key is None for j in jobs):
                return self._put_by_copy(conn, cur, jobs, own=own)
            return [row[0] for row in cur.execute(self._sql.put, _put_params(jobs)).fetchall()]

    def _put_by_copy(
        self,
        conn: psycopg.Connection[Any],
        cur: psycopg.Cursor[Any],
        jobs: Sequence[NewJob],
        *,
        own: bool,
    ) -> list[int | None]:
        """COPY into the session's staging table, then one INSERT ... SELECT
        that also empties it. The put must never end a transaction it did not
        begin: on the caller's connection inside a transaction (psycopg's
        implicit one, or a ``transaction()`` block) it runs as plain
        statements of that transaction. Only where no transaction is open on
        an autocommit connection (ours, or a caller's) is the put wrapped in
        a transaction of its own, which it then commits, as autocommit means."""
        idle = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        block = conn.transaction() if own or (idle and conn.autocommit) else nullcontext()
        with block:
            row = cur.execute(self._sql.jit_off).fetchone()
            cur.execute(self._sql.put_stage_create)
            with cur.copy(self._sql.put_stage_copy) as copy:
                copy.set_types(STAGE_TYPES)
                for ord_, job in enumerate(jobs):
                    copy.write_row(
                        (
                            ord_,
                            job.queue,
                            job.payload,
                            job.serializer,
                            job.priority,
                            float(job.delay),
                            None if job.run_at is None else float(job.run_at),
                            job.max_attempts,
                            _headers(job.headers),
                        )
                    )
            ids = sorted(row[0] for row in cur.execute(self._sql.put_from_stage).fetchall())
            if not own and row is not None:  # the caller's jit setting, as it was
                cur.execute(self._sql.jit_restore, [row[0]])
        if len(ids) != len(jobs):  # pragma: no cover - nothing can skip a row here
            raise BrokerError(f"put stored {len(ids)} of {len(jobs)} jobs")
        return list(ids)

    # -- claiming and settling --------------------------------------------------

    def claim(self, queues: Sequence[str], limit: int, lease: float) -> list[ClaimedJob]:
        if limit <= 0 or not queues:
            if self._pool is None:
                raise BrokerClosedError("claim: the broker is not open")
            return []
        queue_list = list(dict.fromkeys(queues))  # the claim statement needs them distinct
        params = {"queues": queue_list, "limit": limit, "lease": float(lease)}
        now = time.monotonic()
        sweep_key = tuple(queue_list)
        reclaim = now >= self._next_reclaim.get(sweep_key, 0.0)
        if reclaim:
            self._next_reclaim[sweep_key] = now + self.reclaim_interval
        with self._connection("claim") as conn:
            # One round trip: [reclaim expired leases, then] claim. The claim
            # statement's snapshot is taken after the reclaim ran, so jobs put
            # back to 'queued' are claimable by this very call.
            if reclaim:
                with conn.pipeline():
                    swept = conn.execute(self._sql.reclaim, {"queues": queue_list})
                    cur = conn.execute(self._sql.claim, params)
            else:
                swept, cur = None, conn.execute(self._sql.claim, params)
            if swept is not None:
                found = swept.fetchone()
                if found is not None and found[0] >= RECLAIM_BATCH:
                    # more may be waiting: sweep again on the next claim
                    self._next_reclaim.pop(sweep_key, None)
            rows = cur.fetchall()
        return [
            ClaimedJob(
                id=r[0],
                queue=r[1],
                payload=r[2],
                serializer=r[3],
                priority=r[4],
                attempt=r[5],
                max_attempts=r[6],
                run_at=r[7],
                created_at=r[8],
                headers=r[9],
                token=r[10],
            )
            for r in rows
        ]

    def settle(self, settlements: Sequence[Settlement]) -> list[int]:
        if not settlements:
            self._require_open("settle")
            return []
        for s in settlements:
            if s.kind not in _SETTLE_KINDS:
                raise ConfigurationError(f"unknown settlement kind {s.kind!r}")
        params = {
            "ids": [s.id for s in settlements],
            "tokens": [s.token for s in settlements],
            "kinds": [s.kind for s in settlements],
            "errors": [_text(s.error) for s in settlements],
            "delays": [float(s.delay) for s in settlements],
        }
        with self._connection("settle") as conn:
            # Planned per call: a cached generic plan does not know the batch size
            # and may join the batch by a nested loop (quadratic in it).
            row = conn.execute(self._sql.settle, params, prepare=False).fetchone()
        return list(row[0]) if row is not None else []

    def extend(self, leases: Sequence[Lease], lease: float) -> list[int]:
        if not leases:
            self._require_open("extend")
            return []
        params = {
            "ids": [x.id for x in leases],
            "tokens": [x.token for x in leases],
            "lease": float(lease),
        }
        with self._connection("extend") as conn:
            row = conn.execute(self._sql.extend, params, prepare=False).fetchone()
        return list(row[0]) if row is not None else []

    def release(self, leases: Sequence[Lease]) -> int:
        if not leases:
            self._require_open("release")
            return 0
        params = {"ids": [x.id for x in leases], "tokens": [x.token for x in leases]}
        with self._connection("release") as conn:
            row = conn.execute(self._sql.release, params, prepare=False).fetchone()
        return int(row[0]) if row is not None else 0

    def _require_open(self, action: str) -> None:
        if self._pool is None:
            raise BrokerClosedError(f"{action}: the broker is not open")

    # -- operations -------------------------------------------------------------

    def requeue(self, *, ids: Collection[int] | None = None, queue: str | None = None) -> int:
        params = {"ids": None if ids is None else list(ids), "queue": queue}
        with self._connection("requeue") as conn:
            row = conn.execute(self._sql.requeue, params).fetchone()
        return int(row[0]) if row is not None else 0

    def delete(
        self,
        *,
        ids: Collection[int] | None = None,
        queue: str | None = None,
        states: Collection[JobState] | None = None,
        limit: int | None = None,
    ) -> int:
        params = {
            "ids": None if ids is None else list(ids),
            "queue": queue,
            "states": None if states is None else [str(s) for s in states],
            "limit": self._check_limit(limit),
        }
        statement = self._sql.delete if limit is None else self._sql.delete_limited
        with self._connection("delete") as conn:
            return conn.execute(statement, params).rowcount

    def prune(
        self,
        older_than: float,
        *,
        states: Collection[JobState] = (JobState.DONE,),
        queue: str | None = None,
        limit: int | None = None,
    ) -> int:
        wanted = self._prune_states(states)
        params = {
            "states": sorted(str(s) for s in wanted),
            "older_than": float(older_than),
            "queue": queue,
            "limit": self._check_limit(limit),
        }
        statement = self._sql.prune if limit is None else self._sql.prune_limited
        with self._connection("prune") as conn:
            return conn.execute(statement, params).rowcount

    def stats(self, queues: Collection[str] | None = None) -> list[QueueStats]:
        wanted = None if queues is None else list(dict.fromkeys(queues))
        with self._connection("stats") as conn:
            rows = conn.execute(self._sql.stats, {"queues": wanted}).fetchall()
        found = {
            r[0]: QueueStats(
                queue=r[0],
                ready=r[1],
                scheduled=r[2],
                running=r[3],
                failed=r[4],
                done=r[5],
                oldest_ready_age=None if r[6] is None else max(0.0, r[6]),
            )
            for r in rows
        }
        for name in wanted or ():
            found.setdefault(name, QueueStats(queue=name))
        return [found[name] for name in sorted(found)]

    def jobs(
        self,
        *,
        ids: Collection[int] | None = None,
        queue: str | None = None,
        states: Collection[JobState] | None = None,
        limit: int = 100,
        after_id: int | None = None,
    ) -> list[JobInfo]:
        params = {
            "ids": None if ids is None else list(ids),
            "queue": queue,
            "states": None if states is None else [str(s) for s in states],
            "after_id": after_id,
            "limit": max(0, limit),
        }
        with self._connection("jobs") as conn:
            rows = conn.execute(self._sql.jobs, params).fetchall()
        return [
            JobInfo(
                id=r[0],
                queue=r[1],
                state=JobState(r[2]),
                payload=bytes(r[3]),
                serializer=r[4],
                priority=r[5],
                attempts=r[6],
                max_attempts=r[7],
                run_at=r[8].astimezone(UTC),
                created_at=r[9].astimezone(UTC),
                updated_at=r[10].astimezone(UTC),
                lease_until=_utc(r[11]),
                last_error=r[12],
                dedup_key=r[13],
                headers=r[14],
            )
            for r in rows
        ]

    # -- wake-ups ---------------------------------------------------------------

    def subscribe(self, queues: Collection[str], callback: WakeCallback) -> Subscription:
        self._require_open("subscribe")
        listener = self._listener
        if listener is None:  # polling-only mode (listen=False)
            return NullSubscription()
        return listener.subscribe(queues, callback)
