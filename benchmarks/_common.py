"""Shared helpers: throwaway databases, timing, statistics, exactness checks."""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

DEFAULT_ADMIN_DSN = "postgresql://root@127.0.0.1:5432/postgres"
QUEUE = "bench"


class BenchError(RuntimeError):
    """A measurement that cannot be trusted (lost or duplicated jobs, timeouts)."""


def dsn_for(admin_dsn: str, dbname: str) -> str:
    return make_conninfo(admin_dsn, dbname=dbname)


def db_name(admin_dsn: str) -> str:
    return str(conninfo_to_dict(admin_dsn).get("dbname", "postgres"))


def create_database(admin_dsn: str, name: str) -> str:
    """(Re)create database ``name`` and return its DSN."""
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return dsn_for(admin_dsn, name)


def drop_database(admin_dsn: str, name: str) -> None:
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@contextlib.contextmanager
def fresh_database(admin_dsn: str, name: str) -> Iterator[str]:
    dsn = create_database(admin_dsn, name)
    try:
        yield dsn
    finally:
        drop_database(admin_dsn, name)


def execute(dsn: str, statement: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
    """Run one statement on a short-lived autocommit connection; return its rows."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(statement, params)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else []


def truncate_public(dsn: str, keep: Sequence[str] = ()) -> None:
    """Empty every table of the public schema except ``keep`` (ids restart)."""
    rows = execute(
        dsn,
        "SELECT format('%%I.%%I', schemaname, tablename) FROM pg_tables"
        " WHERE schemaname = 'public' AND NOT (tablename = ANY(%s))",
        [list(keep)],
    )
    if rows:
        names = ", ".join(r[0] for r in rows)
        execute(dsn, f"TRUNCATE {names} RESTART IDENTITY CASCADE")
    execute(dsn, "VACUUM ANALYZE")


class Recorder:
    """Counts handler calls per job number and records when each started.

    ``list.append`` is atomic under the GIL, so worker threads and event loops
    can record without a lock; the checks run after the consumer stopped."""

    def __init__(self) -> None:
        self.seen: list[int] = []
        self.started: dict[int, float] = {}
        self.done = threading.Event()
        self.target = -1

    def record(self, number: int) -> None:
        self.started[number] = time.perf_counter()
        self.seen.append(number)
        if len(self.seen) == self.target:
            self.done.set()

    @property
    def count(self) -> int:
        return len(self.seen)

    def check_exact(self, expected: int, *, what: str) -> None:
        """Every job 0..expected-1 ran exactly once."""
        if len(self.seen) != expected or len(set(self.seen)) != expected:
            dups = len(self.seen) - len(set(self.seen))
            raise BenchError(
                f"{what}: handler ran {len(self.seen)} times for {expected} jobs "
                f"({len(set(self.seen))} distinct, {dups} duplicates)"
            )

    def check_no_duplicates(self, *, what: str) -> None:
        dups = len(self.seen) - len(set(self.seen))
        if dups:
            raise BenchError(f"{what}: {dups} jobs ran more than once")


class InFlight:
    """Counts the handlers running at once and keeps the peak (the ``io`` row
    checks that no system ran more than the concurrency it was given).

    Handlers of an async consumer all run on one event loop, but a lock keeps
    it right for threads too; it is taken twice per job, at 10,000 jobs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.now = 0
        self.peak = 0

    def enter(self) -> None:
        with self._lock:
            self.now += 1
            if self.now > self.peak:
                self.peak = self.now

    def leave(self) -> None:
        with self._lock:
            self.now -= 1


class IoLoad:
    """What the ``io`` row's handler does: ``await asyncio.sleep(sleep)``,
    counted in ``inflight`` while it waits."""

    def __init__(self, sleep: float) -> None:
        self.sleep = sleep
        self.inflight = InFlight()

    async def run(self) -> None:
        self.inflight.enter()
        try:
            await asyncio.sleep(self.sleep)
        finally:
            self.inflight.leave()


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.002) -> bool:
    deadline = time.perf_counter() + timeout
    while not predicate():
        if time.perf_counter() >= deadline:
            return False
        time.sleep(interval)
    return True


def summarize(values: Sequence[float]) -> dict[str, Any]:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "values": list(values),
    }


def percentile(samples: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def latencies_ms(sent: dict[int, float], started: dict[int, float]) -> list[float]:
    return [(started[i] - t0) * 1000 for i, t0 in sent.items() if i in started]


def pace(start: float, index: int, interval: float) -> None:
    """Sleep until ``start + index * interval`` (perf_counter time)."""
    delay = start + index * interval - time.perf_counter()
    if delay > 0:
        time.sleep(delay)
