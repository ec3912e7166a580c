"""Shared driving code for the asyncio peers (procrastinate, PgQueuer).

The peer's worker runs on its own event loop in a background thread; the
producer (for the latency and mixed rows) runs on another loop in the calling
thread, with its own connection — as Taskmaster's publisher runs beside its
consumer threads."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from ._common import BenchError, IoLoad, Recorder, execute, latencies_ms, wait_for

try:  # both peers document uvloop as the faster loop; use it when present
    import uvloop

    def run_loop(coro: Coroutine[Any, Any, Any]) -> Any:
        return uvloop.run(coro)

except ImportError:  # pragma: no cover - depends on the environment

    def run_loop(coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run(coro)


class WorkerThread:
    """Runs ``main(ready)`` on a new event loop in a daemon thread.

    ``main`` must call ``ready()`` once the worker is about to run, and return
    when ``stop`` (a zero-argument callable set by ``main``) is invoked."""

    def __init__(self, main: Callable[[WorkerThread], Awaitable[None]]) -> None:
        self._main = main
        self.ready = threading.Event()
        self.stop_callback: Callable[[], None] | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="peer-worker", daemon=True)

    def _run(self) -> None:
        try:
            run_loop(self._main(self))  # type: ignore[arg-type]
        except BaseException as exc:
            self.error = exc
            self.ready.set()

    def start(self) -> None:
        self.thread.start()
        if not self.ready.wait(30):
            raise BenchError("peer worker did not start within 30 s")
        if self.error is not None:
            raise BenchError(f"peer worker failed to start: {self.error!r}") from self.error

    def stop(self, timeout: float = 60) -> None:
        if self.stop_callback is not None:
            self.stop_callback()
        self.thread.join(timeout)
        if self.thread.is_alive():
            raise BenchError("peer worker did not stop within 60 s")
        if self.error is not None and not isinstance(self.error, asyncio.CancelledError):
            raise BenchError(f"peer worker failed: {self.error!r}") from self.error


class AsyncPeer:
    """Template for a peer: subclasses implement the async primitives."""

    name = "peer"
    label = "peer"
    settings = ""
    io_settings = ""
    """How the peer is told to run ``concurrency`` I/O-bound jobs at once (``io`` row)."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    # primitives ---------------------------------------------------------------
    async def _install(self) -> None:
        raise NotImplementedError

    async def _put_one(
        self,
        numbers: range,
        sent: dict[int, float] | None = None,
        interval: float = 0.0,
        until: float | None = None,
    ) -> int:
        raise NotImplementedError

    async def _put_many(self, numbers: range, batch: int) -> None:
        raise NotImplementedError

    async def _worker(
        self, wt: WorkerThread, recorder: Recorder, concurrency: int, io: IoLoad | None = None
    ) -> None:
        """Run the worker; its handler awaits ``io.run()`` first when ``io`` is
        given (``io`` row: concurrency as ``io_settings`` says), then records
        the job's number."""
        raise NotImplementedError

    def queued(self) -> int:
        raise NotImplementedError

    def reset(self) -> None:
        raise NotImplementedError

    # harness API --------------------------------------------------------------
    def setup(self) -> None:
        run_loop(self._install())

    def close(self) -> None:
        pass

    def fill(self, count: int) -> None:
        run_loop(self._put_many(range(count), 10_000))
        # As for Taskmaster: planner statistics for the filled table, or the
        # planner still sees the empty table of the reset and may scan.
        execute(self.dsn, "ANALYZE")

    def put_one(self, count: int) -> float:
        t0 = time.perf_counter()
        run_loop(self._put_one(range(count)))
        return time.perf_counter() - t0

    def put_many(self, count: int, batch: int) -> float:
        t0 = time.perf_counter()
        run_loop(self._put_many(range(count), batch))
        return time.perf_counter() - t0

    def _start_worker(
        self, recorder: Recorder, concurrency: int, io: IoLoad | None = None
    ) -> WorkerThread:
        wt = WorkerThread(lambda w: self._worker(w, recorder, concurrency, io))
        wt.start()
        return wt

    def burn(self, count: int, concurrency: int, cap: float) -> dict[str, Any]:
        recorder = Recorder()
        recorder.target = count
        t0 = time.perf_counter()
        wt = self._start_worker(recorder, concurrency)
        finished = recorder.done.wait(cap)
        elapsed = time.perf_counter() - t0
        processed = recorder.count
        wt.stop()
        what = f"{self.name} burn-down c={concurrency}"
        if finished:
            recorder.check_exact(count, what=what)
        else:
            recorder.check_no_duplicates(what=what)
        return {"processed": processed, "seconds": elapsed, "capped": not finished}

    def io(self, count: int, concurrency: int, sleep: float, cap: float) -> dict[str, Any]:
        """A pre-filled queue of ``count`` jobs whose handler awaits
        ``asyncio.sleep(sleep)``; time from worker start until the last
        handler returned. Fails unless each job ran exactly once and no more
        than ``concurrency`` handlers ever waited at once."""
        recorder = Recorder()
        recorder.target = count
        load = IoLoad(sleep)
        t0 = time.perf_counter()
        wt = self._start_worker(recorder, concurrency, load)
        finished = recorder.done.wait(cap)
        elapsed = time.perf_counter() - t0
        processed = recorder.count
        wt.stop()
        what = f"{self.name} io c={concurrency}"
        if finished:
            recorder.check_exact(count, what=what)
        else:
            recorder.check_no_duplicates(what=what)
        if load.inflight.peak > concurrency:
            raise BenchError(
                f"{what}: {load.inflight.peak} handlers ran at once, more than {concurrency}"
            )
        return {
            "processed": processed,
            "seconds": elapsed,
            "capped": not finished,
            "peak": load.inflight.peak,
        }

    def latency(self, count: int, interval: float, concurrency: int) -> list[float]:
        recorder = Recorder()
        wt = self._start_worker(recorder, concurrency)
        sent: dict[int, float] = {}
        try:
            time.sleep(0.5)
            run_loop(self._put_one(range(count), sent=sent, interval=interval))
            if not wait_for(lambda: recorder.count >= count, 30):
                raise BenchError(f"{self.name} latency: only {recorder.count}/{count} jobs ran")
        finally:
            wt.stop()
        recorder.check_exact(count, what=f"{self.name} latency")
        return latencies_ms(sent, recorder.started)

    def mixed(self, duration: float, concurrency: int) -> dict[str, Any]:
        recorder = Recorder()
        wt = self._start_worker(recorder, concurrency)
        sent: dict[int, float] = {}
        try:
            t0 = time.perf_counter()
            put = run_loop(self._put_one(range(10**9), sent=sent, until=t0 + duration))
            elapsed = time.perf_counter() - t0
            in_window = recorder.count
            if not wait_for(lambda: recorder.count >= put, 60):
                raise BenchError(f"{self.name} mixed: only {recorder.count}/{put} jobs ran")
        finally:
            with contextlib.suppress(BenchError):
                wt.stop()
        recorder.check_exact(put, what=f"{self.name} mixed")
        return {
            "put": put,
            "seconds": elapsed,
            "processed_in_window": in_window,
            "latencies": latencies_ms(sent, recorder.started),
        }


async def paced(start: float, index: int, interval: float) -> None:
    delay = start + index * interval - time.perf_counter()
    if delay > 0:
        await asyncio.sleep(delay)
