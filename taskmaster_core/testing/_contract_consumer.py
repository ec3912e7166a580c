"""The consumer contract: a Consumer and a Publisher, end to end, on the broker.

Part of :class:`taskmaster_core.testing.BrokerContract`: what the consumer loop
needs from a broker (wake-ups, leases kept alive, released jobs on stop,
exactly-once hand-out under many workers) checked through the public API.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections import Counter
from collections.abc import Callable, Collection
from typing import Any

import msgspec
import pytest

from taskmaster_core import (
    ACK,
    REJECT,
    Broker,
    Capability,
    Consumer,
    Job,
    JobState,
    Publisher,
    QueueOptions,
    Reject,
    Retry,
    RetryPolicy,
    WakeCallback,
)

from ._base import ContractBase, needs
from ._builders import new_job
from ._harness import wait_until

__all__ = ["ConsumerContract"]


FAST_RETRY = RetryPolicy(base_delay=0, jitter=0)


def settled(broker: Broker, queue: str = "q") -> bool:
    stats = broker.stats([queue])
    return stats[0].unfinished == 0


class Order(msgspec.Struct):
    sku: str
    quantity: int


class _Deaf:
    """A broker whose wake-up signals never arrive: consumers must poll."""

    def __init__(self, inner: Broker) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def subscribe(self, queues: Collection[str], callback: WakeCallback) -> Any:
        return self._inner.subscribe(queues, lambda queue: None)


def _setting(event: threading.Event) -> Callable[[Job], Any]:
    """A handler that sets ``event`` and acks."""

    def handler(job: Job) -> Any:
        event.set()
        return ACK

    return handler


Style = Callable[[Callable[[Job], Any]], Any]
"""The ``style`` fixture: a test's handler as written (sync) or made async."""


def _in_a_thread(handler: Callable[[Job], Any]) -> Callable[[Job], Any]:
    """``handler`` as an ``async def`` handler that runs it in a thread: the
    consumer then takes its async path (tasks on an event loop) while the
    test's handler may block on events as a sync one does."""

    async def handler_async(job: Job) -> Any:
        return await asyncio.to_thread(handler, job)

    return handler_async


class ConsumerContract(ContractBase):
    """The consumer loop on this broker: outcomes, stop, wake-ups, heartbeats,
    timeouts — each for a sync (``def``) and an async (``async def``) handler."""

    @pytest.fixture(params=["sync", "async"])
    def style(self, request: pytest.FixtureRequest) -> Style:
        """Makes a test's handler sync (as written) or async."""
        return (lambda handler: handler) if request.param == "sync" else _in_a_thread

    def test_every_job_is_handled_exactly_once_with_many_workers(
        self, broker: Broker, style: Style
    ) -> None:
        publisher = Publisher(broker)
        ids = publisher.put_many("q", [{"i": i} for i in range(600)])
        seen: Counter[int] = Counter()
        lock = threading.Lock()

        def handler(job: Job) -> Any:
            with lock:
                seen[job.id] += 1
            return ACK

        with Consumer(broker, "q", style(handler), concurrency=6) as consumer:
            wait_until(lambda: settled(broker), timeout=60, consumers=[consumer])
        assert sorted(seen) == sorted(i for i in ids if i is not None)
        assert set(seen.values()) == {1}
        assert broker.stats() == []

    def test_handler_outcomes_end_in_the_right_state(self, broker: Broker, style: Style) -> None:
        publisher = Publisher(broker, max_attempts=3)
        behaviours = ["ack", "reject", "reject-why", "retry", "raise", "none", "string", "exit"]
        ids = {b: publisher.put("q", b) for b in behaviours}
        calls: Counter[str] = Counter()

        def handler(job: Job) -> Any:
            kind = job.payload
            calls[kind] += 1
            if kind == "ack":
                return ACK
            if kind == "reject":
                return REJECT
            if kind == "reject-why":
                return Reject("no such user")
            if kind == "retry":
                return Retry(delay=0, reason="not yet")
            if kind == "raise":
                raise ValueError("boom")
            if kind == "none":
                return None
            if kind == "string":
                return "ok"
            sys.exit(3)

        consumer = Consumer(
            broker, "q", style(handler), concurrency=2, retry=FAST_RETRY, poll_interval=0.05
        )
        with consumer:
            wait_until(lambda: settled(broker), timeout=30, consumers=[consumer])
            assert consumer.workers_alive == 2
            # The workers still work after all that.
            publisher.put("q", "ack")
            wait_until(lambda: settled(broker), timeout=30, consumers=[consumer])
        failed = {job.id: job for job in broker.jobs(states=[JobState.FAILED])}
        assert ids["ack"] not in failed
        expected_errors = {
            "reject": "rejected by handler",
            "reject-why": "no such user",
            "retry": "attempts used up (3/3): not yet",
            "raise": "attempts used up (3/3): ValueError: boom",
            "none": "handler returned None",
            "string": "handler returned 'ok'",
            "exit": "SystemExit: 3",
        }
        for kind, text in expected_errors.items():
            job = failed[ids[kind]]  # type: ignore[index]
            assert job.last_error is not None
            assert text in job.last_error, (kind, job.last_error)
        # sys.exit() in a handler is an exception like any other: retried, then failed.
        assert calls["retry"] == 3 and calls["raise"] == 3 and calls["exit"] == 3
        assert calls["reject"] == 1 and calls["none"] == 1 and calls["string"] == 1
        assert failed[ids["raise"]].attempts == 3  # type: ignore[index]
        assert "Traceback" in (failed[ids["raise"]].last_error or "")  # type: ignore[index]

    def test_stop_returns_unstarted_jobs_and_finishes_running_ones(
        self, broker: Broker, style: Style
    ) -> None:
        publisher = Publisher(broker)
        publisher.put_many("q", list(range(20)))
        started = threading.Event()
        release = threading.Event()
        handled: list[int] = []

        def handler(job: Job) -> Any:
            started.set()
            release.wait(30)
            handled.append(job.payload)
            return ACK

        consumer = Consumer(broker, "q", style(handler), concurrency=1, prefetch=10)
        consumer.start()
        assert started.wait(15)
        wait_until(lambda: consumer.held == 11, consumers=[consumer])
        threading.Timer(0.2, release.set).start()
        assert consumer.stop(timeout=30) is True
        assert handled == [0]
        (stats,) = broker.stats()
        assert (stats.ready, stats.running, stats.failed) == (19, 0, 0)
        assert {job.attempts for job in broker.jobs(queue="q")} == {0}

    def test_stop_returns_false_when_a_handler_outlives_the_timeout(
        self, broker: Broker, style: Style
    ) -> None:
        Publisher(broker).put("q", 1)
        started = threading.Event()
        release = threading.Event()

        def handler(job: Job) -> Any:
            started.set()
            release.wait(30)
            return ACK

        consumer = Consumer(broker, "q", style(handler))
        consumer.start()
        assert started.wait(15)
        try:
            assert consumer.stop(timeout=0.2) is False
            (stats,) = broker.stats()
            if consumer.is_async:  # its task is cancelled: the job is retried at once
                assert (stats.ready, stats.running) == (1, 0)
                (job,) = broker.jobs(queue="q")
                assert "cancelled: the consumer stopped" in (job.last_error or "")
            else:  # a thread cannot be killed: the job stays leased, retried if it never ends
                assert (stats.ready, stats.running) == (0, 1)
        finally:
            release.set()

    def test_typed_payloads_decode_and_bad_ones_fail_the_job_not_the_worker(
        self, broker: Broker, style: Style
    ) -> None:
        publisher = Publisher(broker)
        good = publisher.put("orders", {"sku": "A1", "quantity": 2})
        bad = publisher.put("orders", {"sku": "A1", "quantity": "lots"})
        got: list[Order] = []

        def handler(job: Job) -> Any:
            got.append(job.payload)
            return ACK

        with Consumer(broker, "orders", style(handler), payload_type=Order) as consumer:
            wait_until(lambda: settled(broker, "orders"), consumers=[consumer])
        assert got == [Order(sku="A1", quantity=2)]
        (failed,) = broker.jobs(states=[JobState.FAILED])
        assert failed.id == bad != good
        assert failed.last_error is not None
        assert "cannot decode payload" in failed.last_error
        assert "quantity" in failed.last_error

    def test_an_unknown_serializer_fails_the_job_with_a_clear_error(
        self, broker: Broker, style: Style
    ) -> None:
        (bad,) = broker.put(
            [new_job("q").__class__(queue="q", payload=b"\x00", serializer="pickle9")]
        )
        ok = Publisher(broker).put("q", "fine")
        handled: list[Any] = []

        def handler(job: Job) -> Any:
            handled.append(job.payload)
            return ACK

        with Consumer(broker, "q", style(handler)) as consumer:
            wait_until(lambda: settled(broker), consumers=[consumer])
        assert handled == ["fine"] and ok != bad
        (failed,) = broker.jobs(states=[JobState.FAILED])
        assert failed.last_error is not None
        assert "unknown serializer 'pickle9'" in failed.last_error

    def test_a_queue_configured_for_msgpack_round_trips(self, broker: Broker, style: Style) -> None:
        publisher = Publisher(broker, queues={"bin": QueueOptions(serializer="msgpack")})
        job_id = publisher.put("bin", {"blob": b"\x00\xff", "n": 1})
        assert job_id is not None
        (stored,) = broker.jobs(ids=[job_id])
        assert stored.serializer == "msgpack"
        got: list[Any] = []

        def handler(job: Job) -> Any:
            got.append((job.serializer, job.payload))
            return ACK

        with Consumer(broker, "bin", style(handler)) as consumer:
            wait_until(lambda: settled(broker, "bin"), consumers=[consumer])
        assert got == [("msgpack", {"blob": b"\x00\xff", "n": 1})]

    def test_several_consumers_on_several_queues_with_context(
        self, broker: Broker, style: Style
    ) -> None:
        publisher = Publisher(broker)
        publisher.put_many("a", range(30))
        publisher.put_many("b", range(30))
        publisher.put_many("c", range(30))
        seen: Counter[tuple[str, str]] = Counter()
        lock = threading.Lock()

        def handler(job: Job) -> Any:
            with lock:
                seen[(job.context["name"], job.queue)] += 1
            return ACK

        first = Consumer(
            broker, ["a", "b"], style(handler), concurrency=2, context={"name": "first"}
        )
        second = Consumer(broker, "c", style(handler), concurrency=3, context={"name": "second"})
        with first, second:
            wait_until(
                lambda: all(s.unfinished == 0 for s in broker.stats(["a", "b", "c"])),
                consumers=[first, second],
            )
        assert seen == {("first", "a"): 30, ("first", "b"): 30, ("second", "c"): 30}

    def test_a_lost_wake_up_only_delays_a_job_until_the_next_poll(
        self, broker: Broker, style: Style
    ) -> None:
        deaf: Any = _Deaf(broker)
        done = threading.Event()
        with Consumer(deaf, "q", style(_setting(done)), poll_interval=0.1):
            Publisher(broker).put("q", 1)
            assert done.wait(10)

    def test_a_retry_runs_again_without_waiting_for_the_poll(
        self, broker: Broker, style: Style
    ) -> None:
        runs: list[int] = []
        done = threading.Event()

        def handler(job: Job) -> Any:
            runs.append(job.attempt)
            if job.attempt == 1:
                return Retry(delay=0.05)
            done.set()
            return ACK

        deaf: Any = _Deaf(broker)
        Publisher(broker).put("q", 1)
        # The first run comes from the claim at start; no signal is ever delivered.
        with Consumer(deaf, "q", style(handler), poll_interval=60):
            assert done.wait(10)
        assert runs == [1, 2]

    def test_the_heartbeat_keeps_the_lease_of_a_slow_handler(
        self, broker: Broker, style: Style
    ) -> None:
        job_id = Publisher(broker).put("q", 1)
        release = threading.Event()
        started = threading.Event()

        def slow(job: Job) -> Any:
            started.set()
            release.wait(30)
            return ACK

        with Consumer(broker, "q", style(slow), lease=0.6) as consumer:
            assert started.wait(10)
            threading.Timer(1.5, release.set).start()
            # Another worker keeps trying to claim while the lease would have expired.
            stolen: list[Any] = []
            while not release.is_set():
                stolen.extend(broker.claim(["q"], 1, 0.6))
                release.wait(0.05)
            wait_until(lambda: settled(broker), consumers=[consumer])
        assert stolen == []
        assert broker.jobs(ids=[job_id or 0]) == []

    @pytest.mark.parametrize("concurrency", [1, 4])
    def test_put_while_consuming_is_picked_up_promptly(
        self, broker: Broker, style: Style, concurrency: int
    ) -> None:
        needs(broker, Capability.WAKE_UPS)
        done = threading.Event()
        with Consumer(
            broker, "q", style(_setting(done)), concurrency=concurrency, poll_interval=30
        ):
            Publisher(broker).put("q", 1)
            assert done.wait(10)  # woken by the broker's signal, not the 30 s poll

    def test_a_handler_that_never_returns_times_out_and_its_worker_is_replaced(
        self, broker: Broker, style: Style
    ) -> None:
        publisher = Publisher(broker, max_attempts=2)
        stuck_id = publisher.put("q", "hang")
        forever = threading.Event()
        done: list[Any] = []

        def handler(job: Job) -> Any:
            if job.payload == "hang":
                forever.wait(60)
                return ACK  # too late: the watchdog has settled this run already
            done.append(job.payload)
            return ACK

        consumer = Consumer(
            broker,
            "q",
            style(handler),
            concurrency=1,
            job_timeout=0.3,
            retry=FAST_RETRY,
            poll_interval=0.05,
        )
        try:
            with consumer:
                wait_until(
                    lambda: bool(broker.jobs(states=[JobState.FAILED])),
                    timeout=20,
                    consumers=[consumer],
                )
                publisher.put("q", "after")
                wait_until(lambda: done == ["after"], timeout=20, consumers=[consumer])
                assert consumer.workers_alive == 1
        finally:
            forever.set()
        (failed,) = broker.jobs(states=[JobState.FAILED])
        assert failed.id == stuck_id
        assert failed.attempts == 2
        assert "attempts used up (2/2): handler timed out after 0.3s" in (failed.last_error or "")
