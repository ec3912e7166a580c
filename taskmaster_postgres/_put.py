"""Putting jobs: the three routes of a put, on the broker's connection or the
caller's, sync or async (see docs/postgres.md, "put" and "Transactional put").

The route, its statements and their order are decided once, by
:func:`_plan`: a generator that yields each step (:class:`Execute` or
:class:`Copy`) and is sent each step's result. Two small drivers run the
steps, :func:`put_on` on a ``psycopg.Connection`` and :func:`put_on_async`
on a ``psycopg.AsyncConnection``; they differ only in awaiting.
"""

from __future__ import annotations

import enum
from collections.abc import Generator, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import msgspec
import psycopg
from psycopg.rows import tuple_row

from taskmaster_core import BrokerError, NewJob

from ._sql import STAGE_TYPES, Statements

__all__ = ["COPY_THRESHOLD", "put_on", "put_on_async", "text"]

COPY_THRESHOLD = 64
"""Batches of at least this many jobs (without dedup keys) are put by COPY."""

_json_encode = msgspec.json.Encoder().encode


def text(value: str | None) -> str | None:
    """Postgres text cannot hold NUL; error messages may contain it."""
    return None if value is None else value.replace("\x00", "\\x00")


def _headers(headers: dict[str, str] | None) -> str | None:
    return text(_json_encode(headers).decode()) if headers else None


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


def _stage_rows(jobs: Sequence[NewJob]) -> Iterator[tuple[Any, ...]]:
    for ord_, job in enumerate(jobs):
        yield (
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


class Route(enum.Enum):
    """How a batch travels: one row (scalar parameters), arrays through
    unnest (aligns dedup skips), or binary COPY through the staging table
    (a large batch without dedup keys)."""

    ONE = "one"
    ARRAYS = "arrays"
    COPY = "copy"


def route_of(jobs: Sequence[NewJob]) -> Route:
    if len(jobs) == 1:
        return Route.ONE
    if len(jobs) >= COPY_THRESHOLD and all(j.dedup_key is None for j in jobs):
        return Route.COPY
    return Route.ARRAYS


def needs_own_transaction(route: Route, conn: psycopg.BaseConnection[Any], *, own: bool) -> bool:
    """The put must never end a transaction it did not begin: on the caller's
    connection inside a transaction (psycopg's implicit one, or a
    ``transaction()`` block) the COPY route runs as plain statements of that
    transaction. Only where no transaction is open on an autocommit
    connection (ours, or a caller's) is it wrapped in a transaction of its
    own, which it then commits, as autocommit means. The other routes are a
    single statement."""
    if route is not Route.COPY:
        return False
    idle = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    return own or (idle and conn.autocommit)


@dataclass(frozen=True, slots=True)
class Execute:
    """Run ``statement``; the result sent back is ``fetch``'s: ``"one"`` row,
    ``"all"`` rows, or ``None`` (no result read)."""

    statement: bytes
    params: Any = None
    fetch: str | None = None


@dataclass(frozen=True, slots=True)
class Copy:
    """COPY ``rows`` (of :data:`STAGE_TYPES`) with ``statement``."""

    statement: bytes
    rows: Iterator[tuple[Any, ...]]


Plan = Generator[Execute | Copy, Any, list[int | None]]


def _plan(statements: Statements, route: Route, jobs: Sequence[NewJob], *, own: bool) -> Plan:
    """The steps of a put by ``route``; returns the ids."""
    if route is Route.ONE:
        row = yield Execute(statements.put_one, _one_params(jobs[0]), fetch="one")
        return [None if row is None else row[0]]
    if route is Route.ARRAYS:
        rows = yield Execute(statements.put, _put_params(jobs), fetch="all")
        return [row[0] for row in rows]
    # COPY into the session's staging table, then one INSERT ... SELECT that
    # also empties it (see _sql: several COPY puts may share a transaction).
    jit = yield Execute(statements.jit_off, fetch="one")
    yield Execute(statements.put_stage_create)
    yield Copy(statements.put_stage_copy, _stage_rows(jobs))
    moved = yield Execute(statements.put_from_stage, fetch="all")
    ids: list[int | None] = sorted(row[0] for row in moved)
    if not own and jit is not None:  # the caller's jit setting, as it was
        yield Execute(statements.jit_restore, [jit[0]])
    if len(ids) != len(jobs):  # pragma: no cover - nothing can skip a row here
        raise BrokerError(f"put stored {len(ids)} of {len(jobs)} jobs")
    return ids


def put_on(
    statements: Statements, conn: psycopg.Connection[Any], jobs: Sequence[NewJob], *, own: bool
) -> list[int | None]:
    """Put on ``conn`` (the broker's own when ``own``, else the caller's) by
    the cheapest route for this batch."""
    route = route_of(jobs)
    plan = _plan(statements, route, jobs, own=own)
    block = conn.transaction() if needs_own_transaction(route, conn, own=own) else nullcontext()
    with conn.cursor(row_factory=tuple_row) as cur, block:
        result: Any = None
        while True:
            try:
                step = plan.send(result)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            if isinstance(step, Copy):
                with cur.copy(step.statement) as copy:
                    copy.set_types(STAGE_TYPES)
                    for row in step.rows:
                        copy.write_row(row)
                result = None
            else:
                cur.execute(step.statement, step.params)
                result = _fetched(step, cur)


async def put_on_async(
    statements: Statements,
    conn: psycopg.AsyncConnection[Any],
    jobs: Sequence[NewJob],
    *,
    own: bool = False,
) -> list[int | None]:
    """:func:`put_on` for an ``AsyncConnection`` (the broker's own when
    ``own``, else the caller's): the same plan, each step awaited."""
    route = route_of(jobs)
    plan = _plan(statements, route, jobs, own=own)
    block = conn.transaction() if needs_own_transaction(route, conn, own=own) else nullcontext()
    async with conn.cursor(row_factory=tuple_row) as cur, block:
        result: Any = None
        while True:
            try:
                step = plan.send(result)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            if isinstance(step, Copy):
                async with cur.copy(step.statement) as copy:
                    copy.set_types(STAGE_TYPES)
                    for row in step.rows:
                        await copy.write_row(row)
                result = None
            else:
                await cur.execute(step.statement, step.params)
                result = await _fetched_async(step, cur)


def _fetched(step: Execute, cur: psycopg.Cursor[Any]) -> Any:
    if step.fetch is None:
        return None
    return cur.fetchone() if step.fetch == "one" else cur.fetchall()


async def _fetched_async(step: Execute, cur: psycopg.AsyncCursor[Any]) -> Any:
    if step.fetch is None:
        return None
    return await (cur.fetchone() if step.fetch == "one" else cur.fetchall())
