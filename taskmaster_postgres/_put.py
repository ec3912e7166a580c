"""Putting jobs: the three routes of a put, on the broker's connection or the
caller's (see docs/postgres.md, "put" and "Transactional put")."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any

import msgspec
import psycopg
from psycopg.rows import tuple_row

from taskmaster_core import BrokerError, NewJob

from ._sql import STAGE_TYPES, Statements

__all__ = ["COPY_THRESHOLD", "put_on", "text"]

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


def put_on(
    statements: Statements, conn: psycopg.Connection[Any], jobs: Sequence[NewJob], *, own: bool
) -> list[int | None]:
    """Put on ``conn`` (the broker's own when ``own``, else the caller's) by
    the cheapest route for this batch: one row (scalar parameters), a large
    batch without dedup keys (binary COPY), anything else (arrays through
    unnest, which aligns dedup skips)."""
    with conn.cursor(row_factory=tuple_row) as cur:
        if len(jobs) == 1:
            row = cur.execute(statements.put_one, _one_params(jobs[0])).fetchone()
            return [None if row is None else row[0]]
        if len(jobs) >= COPY_THRESHOLD and all(j.dedup_key is None for j in jobs):
            return _put_by_copy(statements, conn, cur, jobs, own=own)
        return [row[0] for row in cur.execute(statements.put, _put_params(jobs)).fetchall()]


def _put_by_copy(
    statements: Statements,
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
        row = cur.execute(statements.jit_off).fetchone()
        cur.execute(statements.put_stage_create)
        with cur.copy(statements.put_stage_copy) as copy:
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
        ids = sorted(row[0] for row in cur.execute(statements.put_from_stage).fetchall())
        if not own and row is not None:  # the caller's jit setting, as it was
            cur.execute(statements.jit_restore, [row[0]])
    if len(ids) != len(jobs):  # pragma: no cover - nothing can skip a row here
        raise BrokerError(f"put stored {len(ids)} of {len(jobs)} jobs")
    return list(ids)
