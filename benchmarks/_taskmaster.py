"""Taskmaster adapter: the public API only (Publisher, Consumer, PostgresBroker)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Literal

from taskmaster_core import ACK, Consumer, Job, Publisher
from taskmaster_memory import MemoryBroker
from taskmaster_postgres import PostgresBroker

from ._common import (
    QUEUE,
    BenchError,
    IoLoad,
    Recorder,
    execute,
    latencies_ms,
    pace,
    wait_for,
)

TABLE = "taskmaster_jobs"

SETTINGS = (
    "Consumer defaults (prefetch, flush_interval, lease, poll_interval as shipped), "
    "PostgresBroker defaults (small pool, LISTEN/NOTIFY on), sync no-op handler "
    "returning ACK (acked jobs are deleted); the async rows the same with an "
    "`async def` handler (Consumer runs it on its own event loop thread)"
)

IO_SETTINGS = (
    "Consumer(concurrency=1000) with an `async def` handler: for an async "
    "handler, concurrency is the number of handlers awaiting at once on the "
    "consumer's event loop; everything else at its defaults"
)

HandlerKind = Literal["sync", "async"]


def make_handler(
    recorder: Recorder, kind: HandlerKind = "sync", io: IoLoad | None = None
) -> Callable[[Job], Any]:
    """The no-op handler (records the job's number, returns ACK), as a plain
    function or as ``async def``; with ``io``, an async handler that first
    awaits ``io.run()`` (``asyncio.sleep``) and records when it is done."""
    record = recorder.record
    if io is not None:
        run_io = io.run

        async def wait_io(job: Job) -> Any:
            await run_io()
            record(job.payload["i"])
            return ACK

        return wait_io
    if kind == "async":

        async def noop_async(job: Job) -> Any:
            record(job.payload["i"])
            return ACK

        return noop_async

    def noop(job: Job) -> Any:
        record(job.payload["i"])
        return ACK

    return noop


def fill_sql(
    dsn: str, count: int, *, start: int = 0, state: str = "queued", queue: str = QUEUE
) -> None:
    """Insert ``count`` jobs numbered ``start..`` straight into the table
    (the columns of taskmaster_postgres/_schema.py; JSON payload {"i": n})."""
    if count <= 0:
        return
    extra_cols, extra_vals = "", ""
    if state == "failed":
        extra_cols = ", state, attempts, last_error"
        extra_vals = ", 'failed', 3, 'bench: failed on purpose'"
    execute(
        dsn,
        f"INSERT INTO {TABLE} (queue, payload, serializer, max_attempts{extra_cols})"
        " SELECT %s, convert_to('{\"i\":' || g || '}', 'UTF8'), 'json', 3"
        f"{extra_vals} FROM generate_series(%s::bigint, %s::bigint) AS g",
        [queue, start, start + count - 1],
    )


class TaskmasterSystem:
    name = "taskmaster"
    label = "Taskmaster"
    settings = SETTINGS
    io_settings = IO_SETTINGS

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.broker = PostgresBroker(dsn)

    # -- state ------------------------------------------------------------------

    def setup(self) -> None:
        self.broker.open()
        self.broker.migrate()

    def close(self) -> None:
        self.broker.close()

    def reset(self) -> None:
        execute(self.dsn, f"TRUNCATE {TABLE} RESTART IDENTITY")
        execute(self.dsn, f"VACUUM ANALYZE {TABLE}")

    def queued(self) -> int:
        return int(execute(self.dsn, f"SELECT count(*) FROM {TABLE}")[0][0])

    def fill(self, count: int) -> None:
        fill_sql(self.dsn, count)
        execute(self.dsn, f"ANALYZE {TABLE}")

    # -- putting ----------------------------------------------------------------

    def put_one(self, count: int) -> float:
        publisher = Publisher(self.broker)
        put = publisher.put
        t0 = time.perf_counter()
        for i in range(count):
            put(QUEUE, {"i": i})
        return time.perf_counter() - t0

    def put_many(self, count: int, batch: int) -> float:
        publisher = Publisher(self.broker)
        t0 = time.perf_counter()
        for start in range(0, count, batch):
            publisher.put_many(QUEUE, [{"i": i} for i in range(start, min(count, start + batch))])
        return time.perf_counter() - t0

    # -- consuming --------------------------------------------------------------

    def _consumer(
        self,
        recorder: Recorder,
        concurrency: int,
        broker: Any = None,
        *,
        kind: HandlerKind = "sync",
        io: IoLoad | None = None,
    ) -> Consumer:
        handler = make_handler(recorder, kind, io)
        return Consumer(broker or self.broker, QUEUE, handler, concurrency=concurrency)

    def burn(
        self,
        count: int,
        concurrency: int,
        cap: float,
        *,
        exact: bool = True,
        kind: HandlerKind = "sync",
    ) -> dict[str, Any]:
        """Process a pre-filled queue of ``count`` jobs; time until all are settled.

        ``exact=False``: the table holds more jobs (a backlog); time the first
        ``count`` and only check that none ran twice. ``kind="async"``: the
        same no-op handler as ``async def``."""
        recorder = Recorder()
        consumer = self._consumer(recorder, concurrency, kind=kind)
        t0 = time.perf_counter()
        consumer.start()
        finished = wait_for(lambda: consumer.processed >= count, cap)
        elapsed = time.perf_counter() - t0
        settled = consumer.processed
        consumer.stop()
        what = f"taskmaster burn-down c={concurrency}" + (" (async)" if kind == "async" else "")
        if finished and exact:
            recorder.check_exact(count, what=what)
            left = self.queued()
            if left:
                raise BenchError(f"{what}: {left} jobs left in the table after all were settled")
        else:
            recorder.check_no_duplicates(what=what)
        return {"processed": settled, "seconds": elapsed, "capped": not finished}

    def io(self, count: int, concurrency: int, sleep: float, cap: float) -> dict[str, Any]:
        """A pre-filled queue of ``count`` jobs whose async handler awaits
        ``asyncio.sleep(sleep)``; time from ``start()`` until every outcome is
        settled. Fails unless each job ran exactly once, none is left in the
        table, and no more than ``concurrency`` handlers ever waited at once."""
        recorder = Recorder()
        load = IoLoad(sleep)
        consumer = self._consumer(recorder, concurrency, io=load)
        t0 = time.perf_counter()
        consumer.start()
        finished = wait_for(lambda: consumer.processed >= count, cap)
        elapsed = time.perf_counter() - t0
        settled = consumer.processed
        consumer.stop()
        what = f"taskmaster io c={concurrency}"
        if finished:
            recorder.check_exact(count, what=what)
            left = self.queued()
            if left:
                raise BenchError(f"{what}: {left} jobs left in the table after all were settled")
        else:
            recorder.check_no_duplicates(what=what)
        if load.inflight.peak > concurrency:
            raise BenchError(
                f"{what}: {load.inflight.peak} handlers ran at once, more than {concurrency}"
            )
        return {
            "processed": settled,
            "seconds": elapsed,
            "capped": not finished,
            "peak": load.inflight.peak,
        }

    def latency(
        self, count: int, interval: float, concurrency: int, *, kind: HandlerKind = "sync"
    ) -> list[float]:
        recorder = Recorder()
        consumer = self._consumer(recorder, concurrency, kind=kind)
        publisher = Publisher(self.broker)
        sent: dict[int, float] = {}
        with consumer:
            time.sleep(0.5)  # idle: the consumer is listening, nothing queued
            start = time.perf_counter()
            for i in range(count):
                pace(start, i, interval)
                sent[i] = time.perf_counter()
                publisher.put(QUEUE, {"i": i})
            if not wait_for(lambda: recorder.count >= count, 30):
                raise BenchError(f"taskmaster latency: only {recorder.count}/{count} jobs ran")
        recorder.check_exact(count, what=f"taskmaster latency ({kind} handler)")
        return latencies_ms(sent, recorder.started)

    def mixed(self, duration: float, concurrency: int) -> dict[str, Any]:
        recorder = Recorder()
        consumer = self._consumer(recorder, concurrency)
        publisher = Publisher(self.broker)
        sent: dict[int, float] = {}
        with consumer:
            t0 = time.perf_counter()
            i = 0
            while time.perf_counter() - t0 < duration:
                sent[i] = time.perf_counter()
                publisher.put(QUEUE, {"i": i})
                i += 1
            elapsed = time.perf_counter() - t0
            done_in_window = recorder.count
            if not wait_for(lambda: recorder.count >= i, 60):
                raise BenchError(f"taskmaster mixed: only {recorder.count}/{i} jobs ran")
        recorder.check_exact(i, what="taskmaster mixed")
        return {
            "put": i,
            "seconds": elapsed,
            "processed_in_window": done_in_window,
            "latencies": latencies_ms(sent, recorder.started),
        }


def memory_burn(count: int, concurrency: int) -> float:
    """Burn-down of ``count`` no-op jobs on the in-memory broker; jobs/s."""
    with MemoryBroker() as broker:
        publisher = Publisher(broker)
        for start in range(0, count, 10_000):
            publisher.put_many(QUEUE, [{"i": i} for i in range(start, min(count, start + 10_000))])
        recorder = Recorder()
        record = recorder.record

        def handler(job: Job) -> Any:
            record(job.payload["i"])
            return ACK

        consumer = Consumer(broker, QUEUE, handler, concurrency=concurrency)
        t0 = time.perf_counter()
        consumer.start()
        if not wait_for(lambda: consumer.processed >= count, 300):
            consumer.stop()
            raise BenchError(f"memory burn-down: only {consumer.processed}/{count} settled")
        elapsed = time.perf_counter() - t0
        consumer.stop()
    recorder.check_exact(count, what=f"memory burn-down c={concurrency}")
    return count / elapsed
