"""Quickstart: a publisher and a consumer on the in-memory broker."""

from __future__ import annotations

import time

from taskmaster_core import ACK, REJECT, Broker, Consumer, Job, JobState, Outcome, Publisher
from taskmaster_memory import MemoryBroker


def handle(job: Job) -> Outcome:
    """Ack even numbers, reject odd ones (the original Taskmaster's example)."""
    if job.payload["n"] % 2 == 0:
        return ACK
    return REJECT


def wait_until_finished(broker: Broker, queue: str, timeout: float = 10.0) -> None:
    """Wait until no job of ``queue`` is queued or running."""
    deadline = time.monotonic() + timeout
    while broker.stats([queue])[0].unfinished:
        if time.monotonic() > deadline:
            raise TimeoutError(f"jobs of {queue!r} still unfinished after {timeout}s")
        time.sleep(0.01)


def main() -> None:
    with MemoryBroker() as broker:
        publisher = Publisher(broker)
        for n in range(10):
            publisher.put("numbers", {"n": n})

        with Consumer(broker, "numbers", handle, concurrency=2):
            wait_until_finished(broker, "numbers")

        (stats,) = broker.stats(["numbers"])
        print(f"acked and deleted: {10 - stats.failed}, failed: {stats.failed}")
        for info in broker.jobs(states=[JobState.FAILED]):
            print(f"job {info.id} failed: {info.last_error}")


if __name__ == "__main__":
    main()
