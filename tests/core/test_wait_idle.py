"""``Consumer.wait_idle``: returns once the consumer's queues have nothing
ready or running (scheduled jobs only with ``scheduled=True``), ``False`` on
timeout."""

from __future__ import annotations

import threading
import time

import pytest

from taskmaster_core import ACK, Consumer, Job, Publisher, Retry, TaskmasterError
from taskmaster_memory import MemoryBroker


def test_wait_idle_returns_once_every_job_is_settled() -> None:
    done: list[int] = []

    def handle(job: Job) -> object:
        time.sleep(0.01)
        done.append(job.payload)
        return ACK

    with MemoryBroker() as broker:
        Publisher(broker).put_many("q", list(range(20)))
        with Consumer(broker, "q", handle, concurrency=4) as consumer:
            assert consumer.wait_idle(timeout=10)
            assert sorted(done) == list(range(20))
            assert broker.stats(["q"])[0].unfinished == 0
            assert consumer.held == 0


def test_wait_idle_is_false_when_a_handler_outlasts_the_timeout() -> None:
    release = threading.Event()
    with MemoryBroker() as broker:
        Publisher(broker).put("q", 1)
        with Consumer(broker, "q", lambda job: release.wait(5) and ACK) as consumer:
            began = time.monotonic()
            assert not consumer.wait_idle(timeout=0.2)
            assert 0.2 <= time.monotonic() - began < 2
            release.set()
            assert consumer.wait_idle(timeout=10)


def test_scheduled_jobs_count_only_when_asked() -> None:
    with MemoryBroker() as broker:
        publisher = Publisher(broker)
        publisher.put("q", "later", delay=3600)
        with Consumer(broker, "q", lambda job: ACK, poll_interval=0.05) as consumer:
            assert consumer.wait_idle(timeout=5)
            assert not consumer.wait_idle(timeout=0.1, scheduled=True)


def test_scheduled_true_waits_for_a_retry_to_run() -> None:
    with MemoryBroker() as broker:
        Publisher(broker).put("q", 1)

        def handle(job: Job) -> object:
            return ACK if job.attempt >= 2 else Retry(delay=0.2)

        with Consumer(broker, "q", handle, poll_interval=0.05) as consumer:
            assert consumer.wait_idle(timeout=10, scheduled=True)
            assert broker.stats(["q"])[0].unfinished == 0


def test_a_stopped_consumer_is_not_waited_for() -> None:
    with MemoryBroker() as broker:
        Publisher(broker).put("q", 1)
        consumer = Consumer(broker, "q", lambda job: ACK)
        consumer.start()
        consumer.stop()
        assert not consumer.wait_idle(timeout=5)


def test_wait_idle_on_a_consumer_never_started_says_so() -> None:
    """A test that forgot ``with``/``start()`` must not pass because an empty
    queue looks idle."""
    with MemoryBroker() as broker:
        consumer = Consumer(broker, "q", lambda job: ACK)
        with pytest.raises(TaskmasterError, match="was never started; wait_idle"):
            consumer.wait_idle(timeout=0.1)
