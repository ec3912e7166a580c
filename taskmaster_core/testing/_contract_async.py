"""The async consumer contract: ``async def`` handlers on the broker.

Part of :class:`taskmaster_core.testing.BrokerContract`. The consumer suite
(``_contract_consumer``) already runs every test for an async handler too;
these are what only an async handler has: many jobs in flight on one loop
without a thread each, the loop being the caller's, a job timeout and a stop
cancelling the handler's task. Each test runs its own event loop
(``asyncio.run``), so the suite needs no async test plugin.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Any

from taskmaster_core import ACK, Broker, Consumer, Job, JobState, Publisher, RetryPolicy

from ._base import ContractBase
from ._harness import wait_until

__all__ = ["AsyncConsumerContract"]

FAST_RETRY = RetryPolicy(base_delay=0, jitter=0)


def _unfinished(broker: Broker, queue: str) -> int:
    return sum(s.unfinished for s in broker.stats([queue]))


class AsyncConsumerContract(ContractBase):
    """Async handlers: in flight by the thousand, on the caller's loop, cancelled
    by ``job_timeout`` and by a stop."""

    def test_a_thousand_jobs_are_in_flight_at_once_without_a_thread_each(
        self, broker: Broker
    ) -> None:
        Publisher(broker).put_many("q", list(range(2000)))
        in_flight = 0
        peak = 0
        threads_seen = 0
        everyone_started = asyncio.Event()

        async def handler(job: Job) -> Any:
            nonlocal in_flight, peak, threads_seen
            in_flight += 1
            peak = max(peak, in_flight)
            if in_flight == 1000:
                threads_seen = threading.active_count()
                everyone_started.set()
            try:  # hold every slot until a thousand handlers run together
                await asyncio.wait_for(everyone_started.wait(), 30)
            finally:
                in_flight -= 1
            return ACK

        async def main() -> None:
            async with Consumer(broker, "q", handler, concurrency=1000) as consumer:
                assert await consumer.wait_idle_async(60)
                assert consumer.processed == 2000

        asyncio.run(main())
        assert peak == 1000  # never more than concurrency
        assert 0 < threads_seen < 50, threads_seen
        assert _unfinished(broker, "q") == 0

    def test_handlers_run_on_the_callers_event_loop(self, broker: Broker) -> None:
        Publisher(broker).put_many("q", [1, 2, 3])
        seen: list[tuple[Any, int]] = []

        async def handler(job: Job) -> Any:
            seen.append((asyncio.get_running_loop(), threading.get_ident()))
            return ACK

        async def main() -> tuple[Any, int]:
            async with Consumer(broker, "q", handler, concurrency=3) as consumer:
                assert await consumer.wait_idle_async(15)
            return asyncio.get_running_loop(), threading.get_ident()

        here = asyncio.run(main())
        assert seen == [here] * 3

    def test_a_job_timeout_cancels_the_handlers_task_and_the_consumer_goes_on(
        self, broker: Broker
    ) -> None:
        publisher = Publisher(broker, max_attempts=2)
        stuck = publisher.put("q", "hang")
        cancelled: list[int] = []
        done: list[str] = []

        async def handler(job: Job) -> Any:
            if job.payload == "hang":
                try:
                    await asyncio.sleep(60)
                except asyncio.CancelledError:
                    cancelled.append(job.attempt)
                    raise
            done.append(job.payload)
            return ACK

        async def main() -> None:
            consumer = Consumer(
                broker, "q", handler, job_timeout=0.2, retry=FAST_RETRY, poll_interval=0.05
            )
            async with consumer:
                await asyncio.to_thread(
                    wait_until,
                    lambda: bool(broker.jobs(states=[JobState.FAILED])),
                    20,
                    consumers=[consumer],
                )
                publisher.put("q", "after")
                assert await consumer.wait_idle_async(20)

        asyncio.run(main())
        assert cancelled == [1, 2]  # the handler saw the cancellation, each attempt
        assert done == ["after"]
        (failed,) = broker.jobs(states=[JobState.FAILED])
        assert failed.id == stuck and failed.attempts == 2
        assert "attempts used up (2/2): handler timed out after 0.2s" in (failed.last_error or "")

    def test_a_handler_that_swallows_the_timeout_still_timed_out(self, broker: Broker) -> None:
        job_id = Publisher(broker, max_attempts=1).put("q", 1)

        async def handler(job: Job) -> Any:
            with contextlib.suppress(asyncio.CancelledError):  # ignores it, claims success
                await asyncio.sleep(60)
            return ACK

        async def main() -> None:
            async with Consumer(broker, "q", handler, job_timeout=0.2) as consumer:
                assert await consumer.wait_idle_async(15)

        asyncio.run(main())
        (failed,) = broker.jobs(states=[JobState.FAILED])
        assert failed.id == job_id
        assert "handler timed out after 0.2s" in (failed.last_error or "")

    def test_a_cancelled_error_raised_by_the_handler_itself_is_an_error(
        self, broker: Broker
    ) -> None:
        publisher = Publisher(broker, max_attempts=1)
        job_id = publisher.put("q", "raise")
        publisher.put("q", "fine")
        done: list[str] = []

        async def handler(job: Job) -> Any:
            if job.payload == "raise":
                raise asyncio.CancelledError("from the handler, nobody cancelled it")
            done.append(job.payload)
            return ACK

        async def main() -> None:
            async with Consumer(broker, "q", handler) as consumer:
                assert await consumer.wait_idle_async(15)
                assert consumer.healthy

        asyncio.run(main())
        assert done == ["fine"]
        (failed,) = broker.jobs(states=[JobState.FAILED])
        assert failed.id == job_id
        assert "CancelledError: from the handler" in (failed.last_error or "")

    def test_a_stop_lets_running_handlers_finish_within_its_timeout(self, broker: Broker) -> None:
        Publisher(broker).put_many("q", list(range(5)))
        finished: list[int] = []

        async def handler(job: Job) -> Any:
            await asyncio.sleep(0.3)
            finished.append(job.payload)
            return ACK

        async def main() -> bool:
            consumer = Consumer(broker, "q", handler, concurrency=5)
            await consumer.start_async()
            await _until(lambda: consumer.held == 5)
            await asyncio.sleep(0.05)  # all five started
            return await consumer.stop_async(timeout=30)

        assert asyncio.run(main()) is True
        assert sorted(finished) == [0, 1, 2, 3, 4]
        assert _unfinished(broker, "q") == 0

    def test_a_stop_cancels_handlers_that_outlive_its_timeout_and_retries_their_jobs(
        self, broker: Broker
    ) -> None:
        Publisher(broker, max_attempts=3).put_many("q", [1, 2])
        cancelled: list[int] = []
        started = 0

        async def handler(job: Job) -> Any:
            nonlocal started
            started += 1
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                cancelled.append(job.payload)
                raise
            return ACK

        async def main() -> bool:
            consumer = Consumer(broker, "q", handler, concurrency=2)
            await consumer.start_async()
            await _until(lambda: started == 2)
            return await consumer.stop_async(timeout=0.2)

        assert asyncio.run(main()) is False  # not every handler finished
        assert sorted(cancelled) == [1, 2]
        (stats,) = broker.stats(["q"])
        assert (stats.ready, stats.running, stats.failed) == (2, 0, 0)  # nothing left running
        for job in broker.jobs(queue="q"):
            assert job.attempts == 1
            assert "cancelled: the consumer stopped" in (job.last_error or "")

    def test_drain_async_runs_ready_jobs_on_the_callers_loop(self, broker: Broker) -> None:
        Publisher(broker).put_many("q", [1, 2, 3])
        ran: list[int] = []

        async def handler(job: Job) -> Any:
            await asyncio.sleep(0)
            ran.append(job.payload)
            return ACK

        async def main() -> int:
            return await Consumer(broker, "q", handler).drain_async(raise_errors=True)

        assert asyncio.run(main()) == 3
        assert sorted(ran) == [1, 2, 3]
        assert _unfinished(broker, "q") == 0


async def _until(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"condition not met within {timeout}s")
