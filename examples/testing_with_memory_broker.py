"""Testing an application's jobs with the memory broker (run it: it runs pytest).

The application code under test is ``signup`` (puts a job) and ``send_welcome``
(the handler). The tests show the ways to run queued jobs in a test.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator

import pytest

from taskmaster_core import (
    ACK,
    Broker,
    Consumer,
    Handler,
    Job,
    JobState,
    Outcome,
    Publisher,
    Retry,
    SerializerRegistry,
    Settlement,
    open_broker,
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


def wait_until_finished(broker: Broker, queue: str, timeout: float = 10.0) -> None:
    """Wait until no job of ``queue`` is queued or running."""
    deadline = time.monotonic() + timeout
    while broker.stats([queue])[0].unfinished:
        if time.monotonic() > deadline:
            raise TimeoutError(f"jobs of {queue!r} still unfinished after {timeout}s")
        time.sleep(0.01)


def run_ready_jobs(broker: Broker, queue: str, handler: Handler, context: object) -> list[Outcome]:
    """Claim every ready job of ``queue`` and run ``handler`` on it in this
    thread, recording each outcome; return the outcomes for asserts."""
    serializers = SerializerRegistry()
    outcomes: list[Outcome] = []
    while claimed := broker.claim([queue], limit=100, lease=60):
        for item in claimed:
            payload = serializers.get(item.serializer).loads(item.payload)
            outcome = handler(Job(item, payload, context))
            outcomes.append(outcome)
            if outcome is ACK:
                settlement = Settlement(id=item.id, token=item.token, kind="ack")
            elif isinstance(outcome, Retry):
                delay = outcome.delay or 0.0
                settlement = Settlement(id=item.id, token=item.token, kind="retry", delay=delay)
            else:
                settlement = Settlement(id=item.id, token=item.token, kind="fail")
            broker.settle([settlement])
    return outcomes


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
    with Consumer(broker, "emails", send_welcome, context={"outbox": outbox}):
        wait_until_finished(broker, "emails")
    assert outbox == ["ada@example.com"]


def test_jobs_run_synchronously_in_the_test(broker: MemoryBroker) -> None:
    publisher = Publisher(broker)
    signup(publisher, "ada@example.com")
    signup(publisher, "ada@example.com")  # deduplicated: still one job
    outbox: list[str] = []
    outcomes = run_ready_jobs(broker, "emails", send_welcome, {"outbox": outbox})
    assert outcomes == [ACK]
    assert outbox == ["ada@example.com"]


def test_a_retry_runs_again_when_the_clock_says_so(broker: MemoryBroker, clock: FakeClock) -> None:
    signup(Publisher(broker), "ada@example.com")
    outbox: list[str] = []
    down = {"outbox": outbox, "mail_server_down": True}
    assert run_ready_jobs(broker, "emails", send_welcome, down) == [Retry(delay=60)]
    assert broker.stats(["emails"])[0].scheduled == 1

    clock.advance(59)  # no sleeping: time moves when the test says so
    assert run_ready_jobs(broker, "emails", send_welcome, {"outbox": outbox}) == []
    clock.advance(1)
    assert run_ready_jobs(broker, "emails", send_welcome, {"outbox": outbox}) == [ACK]
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


def test_the_same_test_runs_on_any_broker_url() -> None:
    broker = open_broker(os.environ.get("TASKMASTER_URL", "memory://"))
    broker.open()
    try:
        broker.migrate()
        broker.delete(queue="emails")  # a shared database may hold older jobs
        signup(Publisher(broker), "ada@example.com")
        outbox: list[str] = []
        with Consumer(broker, "emails", send_welcome, context={"outbox": outbox}):
            wait_until_finished(broker, "emails")
        assert outbox == ["ada@example.com"]
    finally:
        broker.close()


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q", "-p", "no:cacheprovider"]))
