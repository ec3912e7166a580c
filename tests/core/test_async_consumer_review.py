"""Async consumer: the lifecycle corners a second reader found, one test each.

Each failed on the first async consumer (commit e7a9a0c). On the memory
broker; the behaviour lives in the consumer, not the broker.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from taskmaster_core import ACK, Consumer, Job, JobState, Publisher, RetryPolicy
from taskmaster_core.testing._harness import wait_until
from taskmaster_memory import MemoryBroker

SLOW_RETRY = RetryPolicy(base_delay=60, jitter=0)


@pytest.fixture
def broker() -> Iterator[MemoryBroker]:
    with MemoryBroker() as broker:
        yield broker


def states(broker: MemoryBroker, queue: str = "q") -> tuple[int, int]:
    (stats,) = broker.stats([queue])
    return stats.ready, stats.running


def test_a_loop_that_ends_without_a_stop_stops_the_consumer_and_starts_nothing_more(
    broker: MemoryBroker, caplog: pytest.LogCaptureFixture
) -> None:
    """asyncio.run() returning cancels the consumer's tasks: the running jobs
    are retried, no further job starts (the first version went on running the
    backlog inside asyncio.run's shutdown), and the consumer stops itself,
    saying why."""
    Publisher(broker).put_many("q", list(range(2000)))
    started = 0

    async def handler(job: Job) -> Any:
        nonlocal started
        started += 1
        await asyncio.sleep(30)
        return ACK

    consumer = Consumer(broker, "q", handler, concurrency=10)

    async def main() -> None:
        await consumer.start_async()
        while started < 10:
            await asyncio.sleep(0.01)
        # returns without stopping: asyncio.run cancels every task

    began = time.monotonic()
    asyncio.run(main())
    assert time.monotonic() - began < 10
    assert started == 10
    assert consumer.wait_stopped(15)
    assert not consumer.healthy
    assert "did the event loop end (asyncio.run returning) without a stop" in caplog.text
    assert states(broker) == (2000, 0)  # the ten cancelled ones are ready again


def test_stop_async_does_not_wait_behind_the_handlers_own_threads(broker: MemoryBroker) -> None:
    """The handlers fill the loop's default executor (asyncio.to_thread); the
    consumer's own waiting must not queue behind them."""
    Publisher(broker).put_many("q", list(range(200)))

    async def handler(job: Job) -> Any:
        await asyncio.to_thread(time.sleep, 0.5)
        return ACK

    async def main() -> tuple[bool, float]:
        loop = asyncio.get_running_loop()
        from concurrent.futures import ThreadPoolExecutor

        loop.set_default_executor(ThreadPoolExecutor(max_workers=2))
        consumer = Consumer(broker, "q", handler, concurrency=50)
        await consumer.start_async()
        await asyncio.sleep(0.2)
        began = time.monotonic()
        clean = await consumer.stop_async(timeout=1.0)
        return clean, time.monotonic() - began

    _clean, took = asyncio.run(main())
    assert took < 4.0, f"stop_async(timeout=1.0) took {took:.1f}s"
    assert states(broker)[1] == 0


def test_a_stop_that_lands_with_a_timeout_still_retries_at_once(broker: MemoryBroker) -> None:
    """The handler blocks the loop past both its job_timeout and the stop's
    timeout, so both cancellations land in one step: the stop's wins (the
    job is ready at once, not after the retry policy's 60 s)."""
    job_id = Publisher(broker, max_attempts=3).put("q", 1)

    async def handler(job: Job) -> Any:
        time.sleep(0.5)  # blocks the loop (what a handler must not do)
        await asyncio.sleep(10)
        return ACK

    consumer = Consumer(broker, "q", handler, job_timeout=0.2, retry=SLOW_RETRY)
    consumer.start()
    wait_until(lambda: consumer.held == 1, consumers=[consumer])
    time.sleep(0.05)
    assert consumer.stop(timeout=0.1) is False
    (job,) = broker.jobs(ids=[job_id or 0])
    assert job.state is JobState.QUEUED
    assert job.run_at.timestamp() <= time.time() + 1
    assert "cancelled: the consumer stopped" in (job.last_error or "")


def test_a_handler_that_blocks_past_its_job_timeout_has_its_result_discarded(
    broker: MemoryBroker,
) -> None:
    job_id = Publisher(broker, max_attempts=3).put("q", 1)

    async def handler(job: Job) -> Any:
        if job.attempt == 1:
            time.sleep(0.6)  # never awaits: the timeout cannot fire
        return ACK

    consumer = Consumer(broker, "q", handler, job_timeout=0.2, retry=SLOW_RETRY)
    with consumer:
        wait_until(lambda: broker.stats(["q"])[0].scheduled == 1, consumers=[consumer])
    (job,) = broker.jobs(ids=[job_id or 0])
    assert job.attempts == 1 and job.state is JobState.QUEUED
    assert "handler timed out after 0.2s" in (job.last_error or "")


def test_a_cancelled_drain_async_gives_its_jobs_back(broker: MemoryBroker) -> None:
    Publisher(broker).put_many("q", list(range(10)))

    async def handler(job: Job) -> Any:
        await asyncio.sleep(10)
        return ACK

    async def main() -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(Consumer(broker, "q", handler).drain_async(), 0.2)

    asyncio.run(main())
    assert states(broker) == (10, 0)


def test_stop_returns_when_the_loop_was_closed_under_the_consumer(broker: MemoryBroker) -> None:
    """run_until_complete(start_async()) then loop.close() (some fixtures do):
    nothing can run on that loop any more, and stop() must not wait for it."""

    async def handler(job: Job) -> Any:
        return ACK

    consumer = Consumer(broker, "q", handler)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(consumer.start_async())
    loop.close()
    stopper = threading.Thread(target=consumer.stop, args=(None,), daemon=True)
    began = time.monotonic()
    stopper.start()
    stopper.join(10)
    assert not stopper.is_alive()
    assert time.monotonic() - began < 5


class _SlowClaims:
    """A broker whose claims wait for ``go`` (a claim under way at stop)."""

    def __init__(self, inner: MemoryBroker) -> None:
        self._inner = inner
        self.in_claim = threading.Event()
        self.go = threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def claim(self, queues: Any, limit: int, lease: float) -> Any:
        self.in_claim.set()
        self.go.wait(10)
        return self._inner.claim(queues, limit, lease)


@pytest.mark.parametrize("style", ["sync", "async"])
def test_a_hurried_stop_returns_the_jobs_of_a_claim_under_way(
    broker: MemoryBroker, style: str
) -> None:
    """stop(timeout=0) while the fetcher is inside a claim: when the claim
    comes back, its jobs go back to the queue, none is left running until
    its lease expires."""
    Publisher(broker).put_many("q", list(range(50)))
    slow = _SlowClaims(broker)

    def sync_handler(job: Job) -> Any:
        return ACK

    async def async_handler(job: Job) -> Any:
        return ACK

    handler: Any = sync_handler if style == "sync" else async_handler
    consumer = Consumer(slow, "q", handler, lease=60)  # type: ignore[arg-type]
    consumer.start()
    assert slow.in_claim.wait(10)
    threading.Timer(0.3, slow.go.set).start()
    consumer.stop(timeout=0)
    assert states(broker)[1] == 0


def test_an_outcome_that_comes_after_the_stop_gave_up_is_logged(
    broker: MemoryBroker, caplog: pytest.LogCaptureFixture
) -> None:
    """A handler that ignores its cancellation outlives the stop: its outcome
    can no longer be recorded; it is logged, not dropped silently."""
    Publisher(broker).put("q", 1)
    release, started = threading.Event(), threading.Event()

    async def stubborn(job: Job) -> Any:
        started.set()
        while not release.is_set():
            try:
                await asyncio.sleep(0.05)
            except asyncio.CancelledError:
                continue  # ignores the stop
        return ACK

    consumer = Consumer(broker, "q", stubborn)
    consumer.start()
    assert started.wait(10)
    assert consumer.stop(timeout=0.1) is False
    with caplog.at_level(logging.WARNING, logger="taskmaster.consumer"):
        release.set()
        wait_until(lambda: "stopped recording outcomes" in caplog.text)


# -- from a second reading of the long-lived workers ---------------------------


@pytest.mark.parametrize("job_timeout", [None, 5.0])
def test_a_cancel_request_left_by_a_handlers_taskgroup_does_not_end_a_worker(
    broker: MemoryBroker, job_timeout: float | None
) -> None:
    """Python 3.11's TaskGroup can leave its parent task's cancel request
    pending when a child fails after the body ended. The parent is a
    long-lived worker: it must clear it and go on (workers ended one by one,
    silently, and their later jobs sat `running`)."""
    publisher = Publisher(broker)
    ran: list[str] = []

    async def handler(job: Job) -> Any:
        if job.payload == "tg":

            async def child() -> None:
                await asyncio.sleep(0.001)
                raise ValueError("child failed")

            try:
                async with asyncio.TaskGroup() as group:
                    group.create_task(child())
            except* ValueError:
                pass  # handled: the job succeeds
        ran.append(job.payload)
        return ACK

    async def main() -> tuple[bool, int]:
        consumer = Consumer(broker, "q", handler, concurrency=4, job_timeout=job_timeout)
        async with consumer:
            publisher.put_many("q", ["tg"] * 4)
            assert await consumer.wait_idle_async(15)
            publisher.put_many("q", ["plain"] * 20)
            assert await consumer.wait_idle_async(15)
        return consumer.wait_stopped(0), consumer.workers_alive

    stopped, _ = asyncio.run(main())
    assert stopped
    assert ran.count("tg") == 4 and ran.count("plain") == 20
    assert states(broker) == (0, 0)


def test_a_handler_is_not_blamed_for_another_blocking_the_loop(broker: MemoryBroker) -> None:
    """Job A is ready to finish just before job B blocks the loop for longer
    than job_timeout; A's own steps were short: its result counts (it was
    discarded and A ran twice). B, which blocked, is the one timed out."""
    runs: list[str] = []
    ready: asyncio.Future[None] | None = None

    async def handler(job: Job) -> Any:
        nonlocal ready
        runs.append(job.payload)
        if job.payload == "A":
            if runs.count("A") == 1:
                ready = asyncio.get_running_loop().create_future()
                await ready  # resolved by B, just before B blocks
            return ACK
        await asyncio.sleep(0.05)
        assert ready is not None
        ready.set_result(None)
        if runs.count("B") == 1:
            time.sleep(1.5)  # B blocks the loop: its own fault
        return ACK

    async def main() -> None:
        publisher = Publisher(broker, max_attempts=3)
        consumer = Consumer(broker, "q", handler, concurrency=2, job_timeout=1.0, retry=SLOW_RETRY)
        async with consumer:
            publisher.put("q", "A")
            await asyncio.sleep(0.05)
            publisher.put("q", "B")
            await asyncio.sleep(2.0)

    asyncio.run(main())
    assert runs.count("A") == 1
    (b,) = broker.jobs(queue="q")
    assert b.state is JobState.QUEUED and "handler timed out after 1s" in (b.last_error or "")


def test_many_ready_workers_share_one_time_budget_per_turn_of_the_loop(
    broker: MemoryBroker,
) -> None:
    """1,000 workers whose jobs never await (200 µs of CPU each): the loop
    still polls I/O and fires timers every few milliseconds. Each worker
    yielding after its own 2 ms let one turn of the loop run them all: a
    5 ms timer fired over a second late."""

    async def handler(job: Job) -> Any:
        end = time.perf_counter() + 0.0002
        while time.perf_counter() < end:
            pass
        return ACK

    async def main() -> float:
        lateness: list[float] = []
        done = asyncio.Event()

        async def ticker() -> None:
            while not done.is_set():
                began = time.perf_counter()
                await asyncio.sleep(0.005)
                lateness.append(time.perf_counter() - began - 0.005)

        async with Consumer(broker, "q", handler, concurrency=1000) as consumer:
            ticking = asyncio.create_task(ticker())
            Publisher(broker).put_many("q", list(range(5000)))
            assert await consumer.wait_idle_async(60)
            done.set()
            await ticking
        return max(lateness)

    worst = asyncio.run(main())
    assert worst < 0.4, f"a 5 ms timer fired {worst * 1000:.0f} ms late"
