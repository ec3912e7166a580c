"""Priorities, scheduling, dedup keys, leases and fencing, step by step.

The broker's clock is injected, so time moves only when we say so, and the
jobs are claimed by hand (the way a consumer does it) to show each rule.
"""

from __future__ import annotations

from taskmaster_core import JobState, JsonSerializer, Publisher, Settlement
from taskmaster_memory import MemoryBroker


class FakeClock:
    """Epoch seconds that move only when ``advance`` is called."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def main() -> None:
    clock = FakeClock()
    json = JsonSerializer()
    with MemoryBroker(clock=clock, keep_done=True) as broker:
        publisher = Publisher(broker)

        # Priorities: higher first; equal priorities in due-time, then id, order.
        publisher.put("q", "low", priority=0)
        publisher.put("q", "high", priority=10)
        publisher.put("q", "later", delay=60)  # scheduled, not ready yet
        claimed = broker.claim(["q"], limit=10, lease=30)
        print("claimed in order:", [json.loads(c.payload) for c in claimed])
        broker.settle([Settlement(id=c.id, token=c.token, kind="ack") for c in claimed])

        clock.advance(60)  # the scheduled job falls due
        (later,) = broker.claim(["q"], limit=10, lease=30)
        print("after 60 s:", json.loads(later.payload))

        # Leases: a worker that stops heart-beating loses its job.
        clock.advance(31)  # the 30 s lease expires
        (again,) = broker.claim(["q"], limit=10, lease=30)
        print(f"reclaimed job {again.id}: attempt {again.attempt}, new token {again.token}")
        print("its last error:", broker.jobs(ids=[again.id])[0].last_error)

        # Fencing: the first worker's outcome is refused; the second one's counts.
        stale = Settlement(id=later.id, token=later.token, kind="ack")
        print("stale worker's ack refused for jobs:", broker.settle([stale]))
        current = Settlement(id=again.id, token=again.token, kind="ack")
        print("current worker's ack refused for jobs:", broker.settle([current]))

        # Dedup keys: one unfinished job per queue and key.
        first = publisher.put("emails", {"to": "ada"}, dedup_key="welcome:ada")
        duplicate = publisher.put("emails", {"to": "ada"}, dedup_key="welcome:ada")
        print(f"dedup: first put -> {first}, second put -> {duplicate}")

        # Keep-done mode: acked jobs stay as "done" until pruned.
        clock.advance(3600)
        (stats,) = broker.stats(["q"])
        pruned = broker.prune(older_than=600, states=[JobState.DONE])
        print(f"done before prune: {stats.done}, pruned: {pruned}")


if __name__ == "__main__":
    main()
