"""tests/postgres/test_transactional_put.py again, for ``AsyncPublisher`` on
the caller's ``psycopg.AsyncConnection``: every put route, every way of
holding the transaction, and commit, rollback, an exception, several puts; the
caller's transaction status, session settings and savepoints; what a
consumer sees before commit. Also: the wrong kind of connection is refused
by either publisher, and a put without a connection never blocks the loop.

pytest-asyncio is not used: each test runs its coroutine with asyncio.run.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import psycopg
import pytest
from psycopg import pq

from taskmaster_core import (
    ACK,
    AsyncPublisher,
    ConfigurationError,
    Consumer,
    Job,
    Message,
    Middleware,
    Outcome,
    PublishFn,
)
from taskmaster_core import Publisher as SyncPublisher
from taskmaster_core.testing import Harness
from taskmaster_postgres._put import COPY_THRESHOLD

from .helpers import wait_until
from .test_transactional_put import ENDINGS, SIZES, CallerError, batch_call, stored_ids

pytestmark = pytest.mark.postgres


async def put_batch(
    publisher: AsyncPublisher, conn: Any, size: int, *, dedup: bool
) -> list[int | None]:
    """The same public calls as the sync tests' ``put_batch``, awaited."""
    name, args = batch_call(size, dedup=dedup)
    result = await getattr(publisher, name)(*args, connection=conn)
    return [result] if name == "put" else list(result)


@asynccontextmanager
async def caller_transaction(conn: psycopg.AsyncConnection[Any], how: str) -> AsyncIterator[None]:
    """The caller's transaction, held the way ``how`` says."""
    if how == "implicit":  # non-autocommit: psycopg begins one on the first statement
        await conn.execute("SELECT 1")
        yield
    elif how == "block":
        async with conn.transaction():
            yield
    elif how == "savepoint":
        async with conn.transaction(), conn.transaction():
            yield
    else:  # pragma: no cover - a typo in a parameter
        raise AssertionError(how)


async def connect(dsn: str, how: str) -> psycopg.AsyncConnection[Any]:
    return await psycopg.AsyncConnection.connect(dsn, autocommit=how != "implicit")


def run(coroutine: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    return asyncio.run(coroutine())


@pytest.mark.parametrize("how", ["implicit", "block", "savepoint"])
@pytest.mark.parametrize("dedup", [False, True], ids=["plain", "dedup"])
@pytest.mark.parametrize("size", SIZES)
def test_commit_keeps_exactly_the_jobs_put_and_rollback_none(
    make_pg_harness: Callable[..., Harness], pg_dsn: str, size: int, dedup: bool, how: str
) -> None:
    broker: Any = make_pg_harness().broker
    publisher = AsyncPublisher(broker)

    async def one_transaction(puts: int, end: str) -> list[int | None]:
        ids: list[int | None] = []
        async with await connect(pg_dsn, how) as conn:
            try:
                async with caller_transaction(conn, how):
                    status = conn.info.transaction_status
                    assert status == pq.TransactionStatus.INTRANS
                    for _ in range(puts):
                        ids += await put_batch(publisher, conn, size, dedup=dedup)
                        # the put neither committed nor ended the caller's transaction
                        assert conn.info.transaction_status == status
                    assert stored_ids(broker) == before  # nothing visible outside yet
                    if end == "raise":
                        raise CallerError
                    if end == "rollback":
                        if how == "implicit":
                            await conn.rollback()
                        else:
                            raise psycopg.Rollback
                if how == "implicit" and end == "commit":
                    await conn.commit()
            except CallerError:
                if how == "implicit":
                    await conn.rollback()
        return ids

    for puts, end in ENDINGS:
        before = stored_ids(broker)
        ids = asyncio.run(one_transaction(puts, end))
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

    async def main() -> list[int | None]:
        async with await psycopg.AsyncConnection.connect(pg_dsn, autocommit=True) as conn:
            ids = await put_batch(AsyncPublisher(broker), conn, size, dedup=False)
            assert conn.info.transaction_status == pq.TransactionStatus.IDLE
            return ids

    ids = run(main)  # first: the assert's left side would be read before it ran
    assert stored_ids(broker) == sorted(ids)


@pytest.mark.parametrize("size", [1, COPY_THRESHOLD])
def test_a_savepoint_rolled_back_after_a_put_takes_only_that_put(
    make_pg_harness: Callable[..., Harness], pg_dsn: str, size: int
) -> None:
    broker: Any = make_pg_harness().broker
    publisher = AsyncPublisher(broker)

    async def put_then_fail(conn: psycopg.AsyncConnection[Any]) -> None:
        async with conn.transaction():
            await put_batch(publisher, conn, size, dedup=False)
            await conn.execute("SELECT 'not a number'::int")

    async def main() -> list[int | None]:
        connecting = psycopg.AsyncConnection.connect(pg_dsn, autocommit=True)
        async with await connecting as conn, conn.transaction():
            kept = await put_batch(publisher, conn, size, dedup=False)
            with pytest.raises(psycopg.errors.InvalidTextRepresentation):
                await put_then_fail(conn)
            again = await put_batch(publisher, conn, size, dedup=False)
        return kept + again

    ids = run(main)  # first: the assert's left side would be read before it ran
    assert stored_ids(broker) == sorted(ids)


@pytest.mark.parametrize("size", [1, COPY_THRESHOLD])
def test_the_callers_session_settings_are_left_alone(
    make_pg_harness: Callable[..., Harness], pg_dsn: str, size: int
) -> None:
    broker: Any = make_pg_harness().broker

    async def main() -> None:
        async with await psycopg.AsyncConnection.connect(pg_dsn) as conn:
            await conn.execute("SET LOCAL jit = on")
            await put_batch(AsyncPublisher(broker), conn, size, dedup=False)
            assert await (await conn.execute("SHOW jit")).fetchone() == ("on",)
            await conn.rollback()

    run(main)


@pytest.mark.parametrize("size", [1, COPY_THRESHOLD])
def test_a_consumer_sees_no_job_before_the_caller_commits(
    make_pg_harness: Callable[..., Harness], pg_dsn: str, size: int
) -> None:
    broker: Any = make_pg_harness().broker
    ran: list[int] = []

    def handler(job: Job) -> Outcome:
        ran.append(job.id)
        return ACK

    async def main() -> list[int | None]:
        async with await psycopg.AsyncConnection.connect(pg_dsn) as conn:
            ids = await put_batch(AsyncPublisher(broker), conn, size, dedup=False)
            await asyncio.sleep(0.5)
            assert ran == []
            await conn.commit()
            return ids

    with Consumer(broker, "q", handler, poll_interval=60):
        ids = run(main)
        wait_until(lambda: len(ran) == size, timeout=10)
    assert sorted(ran) == sorted(i for i in ids if i is not None)


def test_each_publisher_refuses_the_other_kind_of_connection(
    make_pg_harness: Callable[..., Harness], pg_dsn: str
) -> None:
    broker: Any = make_pg_harness().broker
    with (
        psycopg.connect(pg_dsn) as conn,
        pytest.raises(ConfigurationError, match=r"AsyncPublisher takes .*AsyncConnection"),
    ):
        asyncio.run(AsyncPublisher(broker).put("q", 1, connection=conn))

    async def sync_publisher_on_an_async_connection() -> None:
        async with await psycopg.AsyncConnection.connect(pg_dsn) as conn:
            with pytest.raises(ConfigurationError, match="AsyncConnection is for AsyncPublisher"):
                SyncPublisher(broker).put("q", 1, connection=conn)

    run(sync_publisher_on_an_async_connection)
    assert stored_ids(broker) == []


@pytest.mark.parametrize("size", [1, 63, 64, 10_000])
def test_a_put_without_a_connection_never_blocks_the_loop(
    make_pg_harness: Callable[..., Harness], size: int
) -> None:
    """The broker's I/O is awaited on its own async connection: the blocking
    ``broker.put`` never runs on the loop's thread. Building, the publish
    middleware and encoding run on the loop below 64 messages (a thread hop
    would cost more than they do) and on a worker thread from 64 on (10,000
    jobs are tens of milliseconds of CPU). Checked by thread identity, not by
    timing: on a loaded 2-core machine a slow-callback threshold cannot tell
    work on the loop from a thread that merely waited for the CPU."""
    broker: Any = make_pg_harness().broker
    seen: dict[str, set[int]] = {"publish": set(), "put": set(), "put_async": set()}

    class Recording(Middleware):
        def publish(self, message: Message, call_next: PublishFn) -> None:
            seen["publish"].add(threading.get_ident())
            call_next(message)

    real_put, real_put_async = broker.put, broker.put_async

    def put(jobs: Any, **options: Any) -> Any:
        seen["put"].add(threading.get_ident())
        return real_put(jobs, **options)

    async def put_async(jobs: Any, **options: Any) -> Any:
        seen["put_async"].add(threading.get_ident())
        return await real_put_async(jobs, **options)

    broker.put, broker.put_async = put, put_async
    publisher = AsyncPublisher(broker, middleware=[Recording()])

    async def main() -> tuple[int, list[int | None]]:
        if size == 1:
            ids = [await publisher.put("q", {"i": 0})]
        else:
            ids = await publisher.put_many("q", [{"i": i} for i in range(size)])
        return threading.get_ident(), ids

    loop_thread, ids = asyncio.run(main())
    assert seen["put"] == set()  # no blocking put, on any thread
    assert seen["put_async"] == {loop_thread}
    if size < 64:
        assert seen["publish"] == {loop_thread}
    else:
        assert seen["publish"] and loop_thread not in seen["publish"]
    assert stored_ids(broker) == sorted(ids)  # type: ignore[type-var]


def test_concurrent_puts_of_one_loop_use_the_pool_beside_its_connection(
    make_pg_harness: Callable[..., Harness],
) -> None:
    """The loop's own connection serves one put at a time; a put that finds
    it busy runs on the broker's sync pool in a worker thread, so puts from
    many tasks of one loop still run side by side, and all are stored."""
    broker: Any = make_pg_harness().broker
    hops: list[int] = []
    real_put = broker.put

    def put(jobs: Any, **options: Any) -> Any:
        hops.append(threading.get_ident())
        return real_put(jobs, **options)

    broker.put = put
    publisher = AsyncPublisher(broker)

    async def main() -> tuple[int, list[int | None]]:
        ids = await asyncio.gather(*(publisher.put("q", {"i": i}) for i in range(50)))
        return threading.get_ident(), list(ids)

    loop_thread, ids = asyncio.run(main())
    assert len(set(ids)) == 50 and None not in ids
    assert stored_ids(broker) == sorted(ids)  # type: ignore[type-var]
    assert hops and loop_thread not in hops  # some went to the pool, off the loop


def test_each_loop_gets_its_own_connection_and_close_ends_them(
    make_pg_harness: Callable[..., Harness], pg_dsn: str
) -> None:
    """asyncio.run twice with one broker (a test suite does): each loop puts
    on a connection of its own; closing the broker closes them, loops gone or
    not, and no connection is left behind on the server."""
    broker: Any = make_pg_harness().broker
    publisher = AsyncPublisher(broker)

    async def put_one(i: int) -> int | None:
        return await publisher.put("q", {"i": i})

    first, second = asyncio.run(put_one(1)), asyncio.run(put_one(2))
    assert stored_ids(broker) == sorted([first, second])  # type: ignore[type-var]
    name = broker.application_name
    with psycopg.connect(pg_dsn, autocommit=True) as admin:

        def backends() -> int:
            row = admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [name]
            ).fetchone()
            return int(row[0]) if row else 0

        assert backends() >= 1
        broker.close()
        deadline = time.monotonic() + 10
        while backends() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert backends() == 0
