"""The broker's pooled connections: connecting, lending, and translating errors.

``open()`` connects once directly (so that a database that turns us away is
reported at once with the server's own reason), then starts a
``psycopg_pool.ConnectionPool`` of autocommit connections. Every statement
runs on a connection lent by :meth:`Connections.connection` or
:meth:`Connections.put_connection`, inside which each psycopg error becomes
its ``BrokerError`` subclass (see ``_errors``).
"""

from __future__ import annotations

import itertools
import math
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import psycopg_pool
from psycopg.conninfo import conninfo_to_dict

from taskmaster_core import BrokerClosedError, BrokerUnavailableError, ConfigurationError

from ._dsn import check_options, describe_dsn, dsn_connect_timeout
from ._errors import one_line, translate, translated

__all__ = ["Connections"]

_broker_numbers = itertools.count(1)


class Connections:
    """The pool of one broker, opened and closed with it. The constructor
    checks the settings (no I/O); see ``PostgresBroker`` for their meaning."""

    def __init__(
        self,
        dsn: str,
        *,
        pool_min_size: int,
        pool_max_size: int,
        statement_timeout: float | None,
        connect_timeout: float | None,
        application_name: str | None,
        prepare_threshold: int | None,
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
        self.where = describe_dsn(dsn)
        """``user@host:port/dbname`` for messages (never the password)."""
        self.connect_timeout = connect_timeout
        self.application_name = str(
            application_name
            or params.get("application_name")
            or os.environ.get("PGAPPNAME")
            or f"taskmaster/{os.getpid()}/{next(_broker_numbers)}"
        )
        self.connect_kwargs: dict[str, Any] = {
            "application_name": self.application_name,
            "connect_timeout": max(1, round(connect_timeout)),
        }
        self._min_size = pool_min_size
        self._max_size = pool_max_size
        self._statement_timeout = statement_timeout
        self._prepare_threshold = prepare_threshold
        self._pool: psycopg_pool.ConnectionPool[psycopg.Connection[Any]] | None = None
        self._put_lock = threading.Lock()
        self._put_conn: psycopg.Connection[Any] | None = None

    @property
    def is_open(self) -> bool:
        return self._pool is not None

    def require_open(self, action: str) -> None:
        if self._pool is None:
            raise BrokerClosedError(f"{action}: the broker is not open")

    def open(self) -> None:
        """Connect once, then start the pool (not thread-safe: the broker
        serializes ``open()`` and ``close()``)."""
        if self._pool is not None:
            return
        self._first_connection()
        pool: psycopg_pool.ConnectionPool[psycopg.Connection[Any]] = psycopg_pool.ConnectionPool(
            self._dsn,
            min_size=self._min_size,
            max_size=self._max_size,
            kwargs={
                **self.connect_kwargs,
                "autocommit": True,
                "prepare_threshold": self._prepare_threshold,
            },
            configure=self._configure,
            open=False,
            name=f"taskmaster-{self.application_name}",
        )
        try:
            pool.open(wait=True, timeout=self.connect_timeout)
        except psycopg_pool.PoolTimeout as exc:
            pool.close()
            reason = f"no connection within {self.connect_timeout:g}s"
            message = (
                f"could not connect to PostgreSQL at {self.where} within "
                f"{self.connect_timeout:g}s (see the log for the driver's error)"
            )
            raise translate(exc, message, where=self.where, reason=reason) from exc
        self._pool = pool

    def _first_connection(self) -> None:
        """Connect once, directly, retrying for up to ``connect_timeout`` while
        the server is unavailable (unreachable or starting up), but not when
        it turns us away for good (no such database, wrong password)."""
        deadline = time.monotonic() + self.connect_timeout
        pause = 0.05
        while True:
            remaining = deadline - time.monotonic()
            kwargs = {**self.connect_kwargs, "connect_timeout": max(1, math.ceil(remaining))}
            try:
                psycopg.connect(self._dsn, **kwargs).close()
                return
            except psycopg.Error as exc:
                reason = one_line(exc)
                message = f"could not connect to PostgreSQL at {self.where}: {reason}"
                error = translate(exc, message, where=self.where, reason=reason)
                if time.monotonic() + pause >= deadline or not isinstance(
                    error, BrokerUnavailableError
                ):
                    raise error from exc
            time.sleep(pause)
            pause = min(pause * 2, 1.0)

    def _configure(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute(*self.configuration())

    def configuration(self) -> tuple[str, list[str]]:
        """The statement (and its parameters) that sets up each connection.
        JIT compilation pays off for long analytical queries, never for a job
        queue's short statements: on a 10,000-job put it added ~400 ms."""
        timeout = (
            "0" if self._statement_timeout is None else f"{round(self._statement_timeout * 1000)}ms"
        )
        return (
            "SELECT set_config('jit', 'off', false), set_config('statement_timeout', %s, false)",
            [timeout],
        )

    @property
    def dsn(self) -> str:
        return self._dsn

    @property
    def prepare_threshold(self) -> int | None:
        return self._prepare_threshold

    def close(self) -> None:
        pool, self._pool = self._pool, None
        with self._put_lock:
            held, self._put_conn = self._put_conn, None
        if pool is not None:
            if held is not None:
                pool.putconn(held)
            pool.close()

    @contextmanager
    def connection(self, action: str) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection; psycopg errors inside become BrokerErrors
        saying ``<action> failed on <where>: …``."""
        pool = self._pool
        if pool is None:
            raise BrokerClosedError(f"{action}: the broker is not open")
        with translated(action, self.where), pool.connection(timeout=self.connect_timeout) as conn:
            yield conn

    @contextmanager
    def put_connection(self) -> Iterator[psycopg.Connection[Any]]:
        """The connection for a put: the one kept for puts when no other put is
        using it, else any pooled connection. psycopg_pool hands connections
        out round-robin, and a put from a process whose pool has grown (a
        consumer ran) would visit every server backend in turn; keeping one
        warm made one-at-a-time puts ~20% faster here."""
        if not self._put_lock.acquire(blocking=False):
            with self.connection("put") as pooled:
                yield pooled
            return
        try:
            pool = self._pool
            if pool is None:
                raise BrokerClosedError("put: the broker is not open")
            with translated("put", self.where):
                conn = self._kept(pool)
                try:
                    yield conn
                except psycopg.Error:
                    if conn.broken or conn.closed:
                        self._put_conn = None
                        pool.putconn(conn)
                    raise
        finally:
            self._put_lock.release()

    def _kept(
        self, pool: psycopg_pool.ConnectionPool[psycopg.Connection[Any]]
    ) -> psycopg.Connection[Any]:
        """The kept put connection, replaced if it broke (caller holds the put lock)."""
        kept = self._put_conn
        if kept is not None and (kept.closed or kept.broken):
            self._put_conn = None
            pool.putconn(kept)  # the pool discards a broken connection
            kept = None
        if kept is not None:
            return kept
        try:
            kept = self._put_conn = pool.getconn(timeout=self.connect_timeout)
        except psycopg_pool.PoolTimeout as exc:
            reason = f"no connection within {self.connect_timeout:g}s"
            message = f"put failed on {self.where}: {reason}"
            raise translate(exc, message, where=self.where, reason=reason) from exc
        return kept
