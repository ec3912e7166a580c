"""A put on the caller's connection belongs to the caller's transaction.

Every route a put can take (one row, a few rows by arrays, just under and at
the COPY threshold, a large COPY batch; with and without dedup keys) crossed
with every way a caller holds a transaction (psycopg's implicit transaction on
a non-autocommit connection, an explicit ``transaction()`` block, a savepoint
inside one) and every way it can end (commit, rollback, an exception raised by
the caller after the put; one, two or three puts in one transaction). After
each: the caller's transaction status is what it was before the put, a
rollback leaves nothing, a commit leaves exactly the jobs put, once.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from psycopg import pq

from taskmaster_core import ACK, Consumer, Job, Message, Outcome, Publisher
from taskmaster_core.testing import Harness
from taskmaster_postgres._put import COPY_THRESHOLD

from .helpers import wait_until

pytestmark = pytest.mark.postgres

SIZES = [1, 5, COPY_THRESHOLD - 1, COPY_THRESHOLD, 10_000]
_keys = itertools.count()
ENDINGS = [(1, "rollback"), (2, "raise"), (3, "commit"), (2, "commit")]
"""How many puts a caller's transaction holds, and how it ends."""


class CallerError(Exception):
    """Raised by the 'caller' after its puts, to abort its transaction."""


def batch_call(size: int, *, dedup: bool) -> tuple[str, tuple[Any, ...]]:
    """The public call that puts ``size`` jobs (method name, arguments):
    ``put`` for one, ``put_many`` for several, ``publish`` when they carry
    dedup keys. Shared with the async tests."""
    if dedup:
        messages = [
            Message(queue="q", payload={"i": i}, dedup_key=f"k{next(_keys)}") for i in range(size)
        ]
        return "publish", (messages,)
    if size == 1:
        return "put", ("q", {"i": 0})
    return "put_many", ("q", [{"i": i} for i in range(size)])


def put_batch(publisher: Publisher, conn: Any, size: int, *, dedup: bool) -> list[int | None]:
    """Put ``size`` jobs on ``conn`` through the public API (:func:`batch_call`)."""
    name, args = batch_call(size, dedup=dedup)
    result = getattr(publisher, name)(*args, connection=conn)
    return [result] if name == "put" else list(result)


def stored_ids(broker: Any) -> list[int]:
    return sorted(j.id for j in broker.jobs(queue="q", limit=1_000_000))


@contextmanager
def caller_transaction(conn: psycopg.Connection[Any], how: str) -> Iterator[None]:
    """The caller's transaction, held the way ``how`` says."""
    if how == "implicit":  # non-autocommit: psycopg begins one on the first statement
        conn.execute("SELECT 1")
        yield
    elif how == "block":
        with conn.transaction():
            yield
    elif how == "savepoint":
        with conn.transaction(), conn.transaction():
            yield
    else:  # pragma: no cover - a typo in a parameter
        raise AssertionError(how)


def connect(dsn: str, how: str) -> psycopg.Connection[Any]:
    return psycopg.connect(dsn, autocommit=how != "implicit")


@pytest.mark.parametrize("how", ["implicit", "block", "savepoint"])
@pytest.mark.parametrize("dedup", [False, True], ids=["plain", "dedup"])
@pytest.mark.parametrize("size", SIZES)
def test_commit_keeps_exactly_the_jobs_put_and_rollback_none(
    make_pg_harness: Callable[..., Harness], pg_dsn: str, size: int, dedup: bool, how: str
) -> None:
    broker: Any = make_pg_harness().broker
    publisher = Publisher(broker)
    for puts, end in ENDINGS:
        before = stored_ids(broker)
        with connect(pg_dsn, how) as conn:
            ids: list[int | None] = []
            try:
                with caller_transaction(conn, how):
                    status = conn.info.transaction_status
                    assert status == pq.TransactionStatus.INTRANS
                    for _ in range(puts):
                        ids += put_batch(publisher, conn, size, dedup=dedup)
                        # the put neither committed nor ended the caller's transaction
                        assert conn.info.transaction_status == status
                    assert stored_ids(broker) == before  # nothing visible outside yet
                    if end == "raise":
                        raise CallerError
                    if end == "rollback":
                        if how == "implicit":
                            conn.rollback()
                        else:
                            raise psycopg.Rollback
                if how == "implicit" and end == "commit":
                    conn.commit()
            except CallerError:
                if how == "implicit":
                    conn.rollback()
            assert len(ids) == puts * size and None not in ids
            assert len(set(ids)) == len(ids)
            after = stored_ids(broker)
            if end == "commit":
                assert after == sorted(before + ids), f"{puts} puts of {size}, committed"
            else:
                assert after == before, f"{puts} puts of {size}, then {end}"


@pytest.mark.parametrize("size", [1, 5, COPY_THRESHOLD, 10_000])
def test_an_autocommit_connection_outside_a_transaction_commits_each_put(
    make_pg_harness: Callable[..., Harness], pg_dsn: str, size: int
) -> None:
    broker: Any = make_pg_harness().broker
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        ids = put_batch(Publisher(broker), conn, size, dedup=False)
        assert conn.info.transaction_status == pq.TransactionStatus.IDLE
    assert stored_ids(broker) == sorted(ids)


@pytest.mark.parametrize("size", [1, COPY_THRESHOLD])
def test_a_savepoint_rolled_back_after_a_put_takes_only_that_put(
    make_pg_harness: Callable[..., Harness], pg_dsn: str, size: int
) -> None:
    """A savepoint that fails after a put rolls back that put alone; the outer
    transaction goes on putting (the staging table kept nothing) and commits
    exactly the other puts."""
    broker: Any = make_pg_harness().broker
    publisher = Publisher(broker)

    def put_then_fail(conn: psycopg.Connection[Any]) -> None:
        with conn.transaction():
            put_batch(publisher, conn, size, dedup=False)
            conn.execute("SELECT 'not a number'::int")

    with psycopg.connect(pg_dsn, autocommit=True) as conn, conn.transaction():
        kept = put_batch(publisher, conn, size, dedup=False)
        with pytest.raises(psycopg.errors.InvalidTextRepresentation):
            put_then_fail(conn)
        again = put_batch(publisher, conn, size, dedup=False)
    assert stored_ids(broker) == sorted(kept + again)


@pytest.mark.parametrize("size", [1, COPY_THRESHOLD])
def test_the_callers_session_settings_are_left_alone(
    make_pg_harness: Callable[..., Harness], pg_dsn: str, size: int
) -> None:
    broker: Any = make_pg_harness().broker
    with psycopg.connect(pg_dsn) as conn:
        conn.execute("SET LOCAL jit = on")
        put_batch(Publisher(broker), conn, size, dedup=False)
        assert conn.execute("SHOW jit").fetchone() == ("on",)
        conn.rollback()


@pytest.mark.parametrize("size", [1, COPY_THRESHOLD])
def test_a_consumer_sees_no_job_before_the_caller_commits(
    make_pg_harness: Callable[..., Harness], pg_dsn: str, size: int
) -> None:
    """NOTIFY is transactional: a listening consumer can neither claim the
    jobs nor is it woken for them until the caller commits; then the wake-up
    arrives at once (the poll interval is far longer than the wait)."""
    broker: Any = make_pg_harness().broker
    ran: list[int] = []

    def handler(job: Job) -> Outcome:
        ran.append(job.id)
        return ACK

    with Consumer(broker, "q", handler, poll_interval=60):
        with psycopg.connect(pg_dsn) as conn:
            ids = put_batch(Publisher(broker), conn, size, dedup=False)
            time.sleep(0.5)
            assert ran == []
            conn.commit()
        wait_until(lambda: len(ran) == size, timeout=10)
    assert sorted(ran) == sorted(i for i in ids if i is not None)
