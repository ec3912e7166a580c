"""PgQueuer adapter (asyncpg driver, QueueManager, async no-op entrypoint)."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import asyncpg
import pgqueuer
from pgqueuer import AsyncpgDriver, Queries, QueueManager
from psycopg.conninfo import conninfo_to_dict

from ._common import Recorder, execute, truncate_public
from ._peer import AsyncPeer, WorkerThread, paced

ENTRYPOINT = "noop"

SETTINGS = (
    "asyncpg driver (one connection per side, as in PgQueuer's examples), async "
    "entrypoint, QueueManager.run(batch_size=c, max_concurrent_tasks=2c, "
    "dequeue_timeout=5 s); bulk put with Queries.enqueue(lists)"
)


def _batch_size(concurrency: int) -> int:
    return max(1, concurrency)


class PgQueuerSystem(AsyncPeer):
    name = "pgqueuer"
    label = "PgQueuer " + getattr(pgqueuer, "__version__", "")
    settings = SETTINGS

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

    async def _worker(self, wt: WorkerThread, recorder: Recorder, concurrency: int) -> None:
        conn, queries = await self._queries()
        qm = QueueManager(queries)
        record = recorder.record

        @qm.entrypoint(ENTRYPOINT)
        async def noop(job: pgqueuer.Job) -> None:
            record(int(job.payload or b"-1"))

        loop = asyncio.get_running_loop()
        wt.stop_callback = lambda: loop.call_soon_threadsafe(qm.shutdown.set)
        batch = _batch_size(concurrency)
        task = asyncio.create_task(
            qm.run(
                batch_size=batch,
                max_concurrent_tasks=2 * batch,
                dequeue_timeout=timedelta(seconds=5),
            )
        )
        await asyncio.sleep(0.2)
        wt.ready.set()
        try:
            await task
        finally:
            await conn.close()
