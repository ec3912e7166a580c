"""PgQueuer adapter (asyncpg driver, QueueManager, async no-op entrypoint)."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import asyncpg
import pgqueuer
from pgqueuer import AsyncpgDriver, Queries, QueueManager
from psycopg.conninfo import conninfo_to_dict

from ._common import IoLoad, Recorder, execute, truncate_public
from ._peer import AsyncPeer, WorkerThread, paced

ENTRYPOINT = "noop"

SETTINGS = (
    "asyncpg driver (one connection per side, as in PgQueuer's examples), async "
    "entrypoint, QueueManager.run(batch_size=c, max_concurrent_tasks=2c, "
    "dequeue_timeout=5 s); bulk put with Queries.enqueue(lists)"
)


IO_SETTINGS = (
    "QueueManager.run(max_concurrent_tasks=1000, batch_size=500): "
    "max_concurrent_tasks is PgQueuer's hard cap on the jobs a worker holds, "
    "enforced in its dequeue query; batch_size is the most it allows with that "
    "cap (it requires max_concurrent_tasks >= 2 x batch_size); async entrypoint "
    "without a concurrency_limit"
)


def _batch_size(concurrency: int) -> int:
    return max(1, concurrency)


def _run_knobs(concurrency: int, io: bool) -> tuple[int, int]:
    """(batch_size, max_concurrent_tasks) for ``concurrency``.

    No-op rows: batch c, cap 2c (as throughout this harness). ``io`` row: the
    cap is the concurrency itself, so that no more than ``concurrency`` jobs
    wait at once (as for the other systems), and the batch is half of it."""
    if io:
        return max(1, concurrency // 2), max(2, concurrency)
    batch = _batch_size(concurrency)
    return batch, 2 * batch


class PgQueuerSystem(AsyncPeer):
    name = "pgqueuer"
    label = "PgQueuer " + getattr(pgqueuer, "__version__", "")
    settings = SETTINGS
    io_settings = IO_SETTINGS

    async def _queries(self) -> tuple[asyncpg.Connection, Queries]:
        info = conninfo_to_dict(self.dsn)  # asyncpg takes URLs or keywords, not conninfo
        params = {k: info[k] for k in ("host", "port", "user", "password") if info.get(k)}
        conn = await asyncpg.connect(database=info.get("dbname"), **params)
        return conn, Queries(AsyncpgDriver(conn))

    async def _install(self) -> None:
        conn, queries = await self._queries()
        try:
            await queries.install()
        finally:
            await conn.close()

    def reset(self) -> None:
        truncate_public(self.dsn)

    def queued(self) -> int:
        return int(execute(self.dsn, "SELECT count(*) FROM pgqueuer")[0][0])

    async def _put_one(
        self,
        numbers: range,
        sent: dict[int, float] | None = None,
        interval: float = 0.0,
        until: float | None = None,
    ) -> int:
        conn, queries = await self._queries()
        count = 0
        try:
            start = time.perf_counter()
            for i in numbers:
                if interval:
                    await paced(start, i, interval)
                now = time.perf_counter()
                if until is not None and now >= until:
                    break
                if sent is not None:
                    sent[i] = now
                await queries.enqueue(ENTRYPOINT, str(i).encode())
                count += 1
        finally:
            await conn.close()
        return count

    async def _put_many(self, numbers: range, batch: int) -> None:
        conn, queries = await self._queries()
        try:
            for start in range(numbers.start, numbers.stop, batch):
                stop = min(numbers.stop, start + batch)
                size = stop - start
                await queries.enqueue(
                    [ENTRYPOINT] * size,
                    [str(i).encode() for i in range(start, stop)],
                    [0] * size,
                )
        finally:
            await conn.close()

    async def _worker(
        self, wt: WorkerThread, recorder: Recorder, concurrency: int, io: IoLoad | None = None
    ) -> None:
        conn, queries = await self._queries()
        qm = QueueManager(queries)
        record = recorder.record

        if io is None:

            @qm.entrypoint(ENTRYPOINT)
            async def noop(job: pgqueuer.Job) -> None:
                record(int(job.payload or b"-1"))

        else:
            run_io = io.run

            @qm.entrypoint(ENTRYPOINT)
            async def wait_io(job: pgqueuer.Job) -> None:
                await run_io()
                record(int(job.payload or b"-1"))

        loop = asyncio.get_running_loop()
        wt.stop_callback = lambda: loop.call_soon_threadsafe(qm.shutdown.set)
        batch, cap = _run_knobs(concurrency, io is not None)
        task = asyncio.create_task(
            qm.run(
                batch_size=batch,
                max_concurrent_tasks=cap,
                dequeue_timeout=timedelta(seconds=5),
            )
        )
        await asyncio.sleep(0.2)
        wt.ready.set()
        try:
            await task
        finally:
            await conn.close()
