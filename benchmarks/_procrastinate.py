"""procrastinate adapter (async API, PsycopgConnector, async no-op task)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import procrastinate
from procrastinate.worker import Worker

from ._common import QUEUE, IoLoad, Recorder, execute, truncate_public
from ._peer import AsyncPeer, WorkerThread, paced

SETTINGS = (
    "async task (`async def`, the documented way to run jobs concurrently), "
    "Worker(concurrency=c, listen_notify=True, delete_jobs='always', "
    "fetch_job_polling_interval=0.5 s), PsycopgConnector pool max_size = c + 4; "
    "bulk put with Task.batch_defer_async"
)

POOL_CAP = 50
"""Largest connection pool the worker gets (the server allows 100 connections,
shared with the other systems' databases). Only the ``io`` row, at
concurrency 1,000, reaches it."""

IO_SETTINGS = (
    "Worker(concurrency=1000): procrastinate's own knob, an asyncio semaphore of "
    "1,000 running jobs (each fetched with its own fetch_job call); "
    f"PsycopgConnector pool max_size = min(c + 4, {POOL_CAP}) = {POOL_CAP}"
)


def _pool_size(concurrency: int) -> int:
    return min(concurrency + 4, POOL_CAP)


class ProcrastinateSystem(AsyncPeer):
    name = "procrastinate"
    label = "procrastinate " + getattr(procrastinate, "__version__", "")
    settings = SETTINGS
    io_settings = IO_SETTINGS

    def __init__(self, dsn: str) -> None:
        super().__init__(dsn)
        self._recorder: Recorder | None = None
        self._io: IoLoad | None = None

    def _app(self, pool_size: int = 4) -> tuple[procrastinate.App, Any]:
        app = procrastinate.App(
            connector=procrastinate.PsycopgConnector(
                conninfo=self.dsn, min_size=1, max_size=pool_size
            )
        )

        @app.task(name="noop", queue=QUEUE)
        async def noop(i: int) -> None:
            io = self._io
            if io is not None:
                await io.run()
            recorder = self._recorder
            if recorder is not None:
                recorder.record(i)

        return app, noop

    async def _install(self) -> None:
        app, _ = self._app()
        async with app.open_async():
            await app.schema_manager.apply_schema_async()

    def reset(self) -> None:
        truncate_public(self.dsn)

    def queued(self) -> int:
        return int(execute(self.dsn, "SELECT count(*) FROM procrastinate_jobs")[0][0])

    async def _put_one(
        self,
        numbers: range,
        sent: dict[int, float] | None = None,
        interval: float = 0.0,
        until: float | None = None,
    ) -> int:
        app, noop = self._app()
        count = 0
        async with app.open_async():
            start = time.perf_counter()
            for i in numbers:
                if interval:
                    await paced(start, i, interval)
                now = time.perf_counter()
                if until is not None and now >= until:
                    break
                if sent is not None:
                    sent[i] = now
                await noop.defer_async(i=i)
                count += 1
        return count

    async def _put_many(self, numbers: range, batch: int) -> None:
        app, noop = self._app()
        async with app.open_async():
            for start in range(numbers.start, numbers.stop, batch):
                stop = min(numbers.stop, start + batch)
                await noop.batch_defer_async(*({"i": i} for i in range(start, stop)))

    async def _worker(
        self, wt: WorkerThread, recorder: Recorder, concurrency: int, io: IoLoad | None = None
    ) -> None:
        self._recorder = recorder
        self._io = io
        app, _ = self._app(pool_size=_pool_size(concurrency))
        async with app.open_async():
            worker = Worker(
                app,
                queues=[QUEUE],
                concurrency=concurrency,
                wait=True,
                listen_notify=True,
                delete_jobs="always",
                fetch_job_polling_interval=0.5,
                install_signal_handlers=False,
            )
            wt.stop_callback = worker.stop
            task = asyncio.create_task(worker.run())
            await asyncio.sleep(0.2)  # let it register and LISTEN
            wt.ready.set()
            await task
