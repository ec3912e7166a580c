"""Testing an application's jobs with the memory broker (run it: it runs pytest).

The application code under test is ``signup`` (puts a job) and ``send_welcome``
(the handler). The tests show the ways to run queued jobs in a test.
Run it with ``python examples/testing_with_memory_broker.py``; pytest options
(``-k``, ``--taskmaster-url``) pass through.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator

import pytest

from taskmaster_core import (
    ACK,
    Broker,
    Consumer,
    Job,
    JobState,
    Outcome,
    Publisher,
    Retry,
    Settlement,
)
from taskmaster_memory import MemoryBroker

# -- the application --------------------------------------------------------


def signup(publisher: Publisher, email: str) -> None:
    publisher.put("emails", {"to": email}, dedup_key=f"welcome:{email}")


def send_welcome(job: Job) -> Outcome:
    outbox: list[str] = job.context["outbox"]
    if job.context.get("mail_server_down"):
        return Retry(delay=60)
    outbox.append(job.payload["to"])
    return ACK


# -- helpers for the tests --------------------------------------------------


class FakeClock:
    """Epoch seconds that move only when ``advance`` is called."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# -- fixtures ---------------------------------------------------------------


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def broker(clock: FakeClock) -> Iterator[MemoryBroker]:
    with MemoryBroker(clock=clock) as broker:
        yield broker


# -- the tests --------------------------------------------------------------


def test_a_consumer_runs_the_welcome_email(broker: MemoryBroker) -> None:
    signup(Publisher(broker), "ada@example.com")
    outbox: list[str] = []
    with Consumer(broker, "emails", send_welcome, context={"outbox": outbox}) as consumer:
        assert consumer.wait_idle()
    assert outbox == ["ada@example.com"]


def test_jobs_run_synchronously_in_the_test(broker: MemoryBroker) -> None:
    publisher = Publisher(broker)
    signup(publisher, "ada@example.com")
    signup(publisher, "ada@example.com")  # deduplicated: still one job
    outbox: list[str] = []
    consumer = Consumer(broker, "emails", send_welcome, context={"outbox": outbox})
    assert consumer.drain(raise_errors=True) == 1  # runs here, in this thread
    assert outbox == ["ada@example.com"]


def test_a_retry_runs_again_when_the_clock_says_so(broker: MemoryBroker, clock: FakeClock) -> None:
    signup(Publisher(broker), "ada@example.com")
    outbox: list[str] = []
    context = {"outbox": outbox, "mail_server_down": True}
    consumer = Consumer(broker, "emails", send_welcome, context=context)
    assert consumer.drain() == 1  # Retry(delay=60)
    assert broker.stats(["emails"])[0].scheduled == 1

    context["mail_server_down"] = False
    clock.advance(59)  # no sleeping: time moves when the test says so
    assert consumer.drain() == 0
    clock.advance(1)
    assert consumer.drain() == 1
    assert outbox == ["ada@example.com"]


def test_a_lost_worker_s_job_comes_back_after_its_lease(
    broker: MemoryBroker, clock: FakeClock
) -> None:
    signup(Publisher(broker), "ada@example.com")
    (first,) = broker.claim(["emails"], limit=1, lease=30)  # then the "worker" dies
    assert broker.claim(["emails"], limit=1, lease=30) == []

    clock.advance(31)
    (second,) = broker.claim(["emails"], limit=1, lease=30)
    assert (second.id, second.attempt) == (first.id, 2)
    assert broker.settle([Settlement(id=first.id, token=first.token, kind="ack")]) == [first.id]
    assert broker.jobs(states=[JobState.RUNNING])[0].id == second.id


def test_the_same_test_runs_on_any_broker(
    taskmaster_broker: Broker, taskmaster_publisher: Publisher
) -> None:
    # Fixtures of Taskmaster's pytest plugin: the memory broker, or the broker
    # of $TASKMASTER_TEST_URL / --taskmaster-url (emptied before each test).
    signup(taskmaster_publisher, "ada@example.com")
    outbox: list[str] = []
    consumer = Consumer(taskmaster_broker, "emails", send_welcome, context={"outbox": outbox})
    with consumer:
        assert consumer.wait_idle()
    assert outbox == ["ada@example.com"]


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q", "-p", "no:cacheprovider", *sys.argv[1:]]))
