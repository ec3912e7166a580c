"""procrastinate adapter (async API, PsycopgConnector, async no-op task)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import procrastinate
from procrastinate.worker import Worker

from ._common import QUEUE, Recorder, execute, truncate_public
from ._peer import AsyncPeer, WorkerThread, paced

SETTINGS = (
    "async task (`async def`, the documented way to run jobs concurrently), "
    "Worker(concurrency=c, listen_notify=True, delete_jobs='always', "
    "fetch_job_polling_interval=0.5 s), PsycopgConnector pool max_size = c + 4; "
    "bulk put with Task.batch_defer_async"
)


class ProcrastinateSystem(AsyncPeer):
    name = "procrastinate"
    label = "procrastinate " + getattr(procrastinate, "__version__", "")
    settings = SETTINGS

    def __init__(self, dsn: str) -> None:
        super().__init__(dsn)
        self._recorder: Recorder | None = None

    def _app(self, pool_size: int = 4) -> tuple[procrastinate.App, Any]:
        app = procrastinate.App(
            connector=procrastinate.PsycopgConnector(
                conninfo=self.dsn, min_size=1, max_size=pool_size
            )
        )

        @app.task(name="noop", queue=QUEUE)
        async def noop(i: int) -> None:
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

    async def _worker(self, wt: WorkerThread, recorder: Recorder, concurrency: int) -> None:
        self._recorder = recorder
        app, _ = self._app(pool_size=concurrency + 4)
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
