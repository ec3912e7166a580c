"""Quickstart: a publisher and a consumer on the in-memory broker."""

from __future__ import annotations

from taskmaster_core import ACK, REJECT, Consumer, Job, JobState, Outcome, Publisher
from taskmaster_memory import MemoryBroker


def handle(job: Job) -> Outcome:
    """Ack even numbers, reject odd ones (the original Taskmaster's example)."""
    if job.payload["n"] % 2 == 0:
        return ACK
    return REJECT


def main() -> None:
    with MemoryBroker() as broker:
        publisher = Publisher(broker)
        for n in range(10):
            publisher.put("numbers", {"n": n})

        with Consumer(broker, "numbers", handle, concurrency=2) as consumer:
            assert consumer.wait_idle()

        (stats,) = broker.stats(["numbers"])
        print(f"acked and deleted: {10 - stats.failed}, failed: {stats.failed}")
        for info in broker.jobs(states=[JobState.FAILED]):
            print(f"job {info.id} failed: {info.last_error}")


if __name__ == "__main__":
    main()
