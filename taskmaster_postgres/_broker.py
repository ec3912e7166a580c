"""PostgresBroker: the Broker protocol on one PostgreSQL table.

Short statements run on a small ``psycopg_pool.ConnectionPool`` of autocommit
connections (every broker operation is a single statement, or two pipelined
ones for claim, so each is one round trip and its own transaction). Wake-ups
come from one dedicated LISTEN connection (see ``_listener``), opened only
once somebody subscribes. Connections and their error translation are in
``_connections`` and ``_errors``, the put routes in ``_put``, the SQL in
``_sql`` and its rows in ``_rows``. See docs/postgres.md.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Collection, Sequence
from typing import Any

import msgspec
import psycopg

from taskmaster_core import (
    BrokerBase,
    Capability,
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
    check_queue_names,
)

from . import _schema
from ._claims import Claims
from ._connections import Connections
from ._dsn import describe_dsn
from ._errors import translated
from ._listener import Listener, NullSubscription
from ._loop_connections import LoopConnections
from ._names import TableNames
from ._put import put_on, put_on_async
from ._rows import job_info_row, queue_stats_row
from ._sql import Statements

__all__ = ["PostgresBroker"]


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
        self._connections = Connections(
            dsn,
            pool_min_size=pool_min_size,
            pool_max_size=pool_max_size,
            statement_timeout=statement_timeout,
            connect_timeout=connect_timeout,
            application_name=application_name,
            prepare_threshold=prepare_threshold,
        )
        self._dsn = dsn
        self.application_name = self._connections.application_name
        self.names = TableNames(schema, table)
        self.keep_done = keep_done
        self.listen = listen
        self._max_backoff = max_reconnect_backoff
        if reclaim_interval < 0:
            raise ConfigurationError("reclaim_interval must be >= 0 seconds")
        self.async_commit = async_commit
        self._sql = Statements(self.names, keep_done=keep_done, async_commit=async_commit)
        self._claims = Claims(self._sql, self._connections, reclaim_interval=reclaim_interval)
        self._loop_connections = LoopConnections(self._connections)
        self._lock = threading.Lock()
        self._listener: Listener | None = None
        self.capabilities = frozenset(
            {
                Capability.TRANSACTIONAL_PUT,
                Capability.PAUSE,
                *([Capability.WAKE_UPS] if listen else []),
            }
        )

    @property
    def reclaim_interval(self) -> float:
        """Seconds between two looks for expired leases (see the class docstring)."""
        return self._claims.reclaim_interval

    @reclaim_interval.setter
    def reclaim_interval(self, seconds: float) -> None:
        if seconds < 0:
            raise ConfigurationError("reclaim_interval must be >= 0 seconds")
        self._claims.reclaim_interval = seconds

    def __repr__(self) -> str:
        state = "open" if self._connections.is_open else "closed"
        return f"<PostgresBroker {describe_dsn(self._dsn)} {self.names.display} {state}>"

    # -- lifecycle --------------------------------------------------------------

    def open(self) -> None:
        with self._lock:
            if self._connections.is_open:
                return
            self._connections.open()
            if self.listen:
                self._listener = Listener(
                    self._dsn,
                    self.names.channel,
                    connect_kwargs=self._connections.connect_kwargs,
                    ready_timeout=self._connections.connect_timeout,
                    max_backoff=self._max_backoff,
                    describe=lambda: self._connections.where,
                )

    def close(self) -> None:
        # One step under the lock, connections first: from the moment close()
        # begins, every method (subscribe too) says the broker is closed, and
        # an open() meanwhile waits for the close to finish.
        with self._lock:
            listener, self._listener = self._listener, None
            self._connections.close()
            self._loop_connections.close()
            if listener is not None:
                listener.close()

    # -- schema -----------------------------------------------------------------

    def migrate(self) -> None:
        with self._connections.connection("migrate") as conn:
            _schema.migrate(conn, self.names)

    def migration_sql(self) -> list[str]:
        """The statements :meth:`migrate` would run now, as text, without
        running them (empty when the table is up to date)."""
        with self._connections.connection("migrate --dry-run") as conn:
            return _schema.plan(conn, self.names)

    def create_jobs_table(self) -> None:
        """Create (or upgrade) the jobs table: the same as :meth:`migrate`."""
        self.migrate()

    def drop_jobs_table(self) -> None:
        """Drop the jobs table, its trigger function and version records."""
        with self._connections.connection("drop_jobs_table") as conn:
            _schema.drop(conn, self.names)

    def schema_version(self) -> int:
        """The applied schema version (0 when the table does not exist)."""
        with self._connections.connection("schema_version") as conn, conn.transaction():
            return _schema.applied_version(conn, self.names)

    # -- putting ----------------------------------------------------------------

    def put(self, jobs: Sequence[NewJob], *, connection: Any = None) -> list[int | None]:
        if connection is not None:
            _check_connection(connection, psycopg.Connection, "Publisher", "psycopg.Connection")
        self._connections.require_open("put")
        if not jobs:
            return []
        check_new_jobs(jobs)
        if connection is None:
            with self._connections.put_connection() as conn:
                return put_on(self._sql, conn, jobs, own=True)
        # The caller's transaction decides: no commit here.
        with translated("put", "the caller's connection"):
            return put_on(self._sql, connection, jobs, own=False)

    async def put_async(
        self, jobs: Sequence[NewJob], *, connection: Any = None
    ) -> list[int | None]:
        """:meth:`put` on the caller's ``psycopg.AsyncConnection``, awaited
        (``AsyncTransactionalPut``): the same statements, routes and
        transaction rules. Without ``connection``, on the broker's own async
        connection for this event loop (see ``_loop_connections``)."""
        if connection is not None:
            _check_connection(
                connection, psycopg.AsyncConnection, "AsyncPublisher", "psycopg.AsyncConnection"
            )
        self._connections.require_open("put")
        if not jobs:
            return []
        check_new_jobs(jobs)
        if connection is None:
            slot = await self._loop_connections.take()
            if slot is None:  # another put of this loop has it: the sync pool, in a thread
                return await asyncio.to_thread(self.put, jobs)
            try:
                assert slot.conn is not None
                with translated("put", self._connections.where):
                    return await put_on_async(self._sql, slot.conn, jobs, own=True)
            finally:
                self._loop_connections.give_back(slot)
        # The caller's transaction decides: no commit here.
        with translated("put", "the caller's connection"):
            return await put_on_async(self._sql, connection, jobs)

    # -- claiming and settling --------------------------------------------------

    def claim(self, queues: Sequence[str], limit: int, lease: float) -> list[ClaimedJob]:
        return self._claims.claim(queues, limit, lease)

    def settle(self, settlements: Sequence[Settlement]) -> list[int]:
        return self._claims.settle(settlements)

    def extend(self, leases: Sequence[Lease], lease: float) -> list[int]:
        return self._claims.extend(leases, lease)

    def release(self, leases: Sequence[Lease]) -> int:
        return self._claims.release(leases)

    def _require_open(self, action: str) -> None:
        self._connections.require_open(action)

    # -- operations -------------------------------------------------------------

    def requeue(self, *, ids: Collection[int] | None = None, queue: str | None = None) -> int:
        params = {"ids": None if ids is None else list(ids), "queue": queue}
        with self._connections.connection("requeue") as conn:
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
        with self._connections.connection("delete") as conn:
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
        with self._connections.connection("prune") as conn:
            return conn.execute(statement, params).rowcount

    def stats(self, queues: Collection[str] | None = None) -> list[QueueStats]:
        wanted = None if queues is None else list(dict.fromkeys(queues))
        with self._connections.connection("stats") as conn:
            cur = conn.cursor(row_factory=queue_stats_row)
            found = {s.queue: s for s in cur.execute(self._sql.stats, {"queues": wanted})}
            paused = [row[0] for row in conn.execute(self._sql.paused)]
        for name in wanted or ():
            found.setdefault(name, QueueStats(queue=name))
        for name in paused:
            if wanted is None or name in found:
                found[name] = msgspec.structs.replace(
                    found.get(name, QueueStats(queue=name)), paused=True
                )
        return [found[name] for name in sorted(found)]

    # -- pausing ----------------------------------------------------------------

    def pause(self, queues: Sequence[str]) -> None:
        names = check_queue_names(queues)
        with self._connections.connection("pause") as conn:
            conn.execute(self._sql.pause, {"queues": names})

    def resume(self, queues: Sequence[str]) -> None:
        names = check_queue_names(queues)
        with self._connections.connection("resume") as conn:
            conn.execute(self._sql.resume, {"queues": names})

    def paused(self) -> list[str]:
        with self._connections.connection("paused") as conn:
            return [row[0] for row in conn.execute(self._sql.paused)]

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
        with self._connections.connection("jobs") as conn:
            return conn.cursor(row_factory=job_info_row).execute(self._sql.jobs, params).fetchall()

    # -- wake-ups ---------------------------------------------------------------

    def subscribe(self, queues: Collection[str], callback: WakeCallback) -> Subscription:
        self._require_open("subscribe")
        listener = self._listener
        if listener is None:  # polling-only mode (listen=False)
            return NullSubscription()
        return listener.subscribe(queues, callback)


def _check_connection(connection: object, kind: type, publisher: str, wanted: str) -> None:
    """A sync connection for ``Publisher``, an async one for ``AsyncPublisher``."""
    if isinstance(connection, kind):
        return
    if isinstance(connection, psycopg.AsyncConnection):
        hint = " (an AsyncConnection is for AsyncPublisher)"
    elif isinstance(connection, psycopg.Connection):
        hint = " (a sync Connection is for Publisher)"
    else:
        hint = ""
    raise ConfigurationError(
        f"{publisher} takes connection={wanted}, got {type(connection).__name__}{hint}"
    )
