"""The broker contract, operations: requeue, delete, prune, stats, listing, wake-ups, close.

Part of the broker contract (:class:`taskmaster_core.testing.BrokerContract`):
these tests run unchanged against every broker kind; time passes through
``harness.advance``, so no test sleeps for a lease or a schedule.
"""

from __future__ import annotations

import threading

import pytest

from taskmaster_core import Broker, BrokerClosedError, Capability, ConfigurationError, JobState

from ._base import LEASE, ContractBase, needs
from ._builders import ack, fail, info, new_job, put_one
from ._harness import Harness, HarnessFactory

__all__ = ["OperationsContract"]


def _fail_all(broker: Broker, queue: str) -> list[int]:
    claimed = broker.claim([queue], 100, LEASE)
    broker.settle([fail(job) for job in claimed])
    return sorted(job.id for job in claimed)


class OperationsContract(ContractBase):
    """Requeue, delete, prune, stats and listing; wake-ups; a closed broker."""

    # -- operations

    def test_requeue_by_ids_resets_attempts_and_keeps_others_failed(self, broker: Broker) -> None:
        broker.put([new_job("q", {"i": i}) for i in range(3)])
        a, b, c = _fail_all(broker, "q")
        assert broker.requeue(ids=[a, b]) == 2
        assert broker.requeue(ids=[a]) == 0  # no longer failed
        states = {j.id: (j.state, j.attempts) for j in broker.jobs(ids=[a, b, c])}
        assert states == {
            a: (JobState.QUEUED, 0),
            b: (JobState.QUEUED, 0),
            c: (JobState.FAILED, 1),
        }
        assert sorted(j.id for j in broker.claim(["q"], 10, LEASE)) == [a, b]

    def test_requeue_a_whole_queue(self, broker: Broker) -> None:
        broker.put([new_job("a") for _ in range(3)] + [new_job("b")])
        _fail_all(broker, "a")
        _fail_all(broker, "b")
        assert broker.requeue(queue="a") == 3
        counts = {s.queue: (s.ready, s.failed) for s in broker.stats()}
        assert counts == {"a": (3, 0), "b": (0, 1)}
        assert broker.requeue() == 1
        assert broker.stats(["b"])[0].ready == 1

    def test_requeue_skips_a_job_whose_dedup_key_is_taken(self, broker: Broker) -> None:
        old = put_one(broker, dedup_key="k")
        _fail_all(broker, "q")
        newer = put_one(broker, dedup_key="k")
        assert broker.requeue(ids=[old]) == 0
        stored = info(broker, old)
        assert stored is not None
        assert stored.state is JobState.FAILED
        assert info(broker, newer) is not None

    def test_delete_by_queue_ids_and_states(self, broker: Broker) -> None:
        broker.put([new_job("a") for _ in range(4)] + [new_job("b") for _ in range(2)])
        failed = _fail_all(broker, "b")
        ids_a = sorted(j.id for j in broker.jobs(queue="a"))
        assert broker.delete(ids=ids_a[:1]) == 1
        assert broker.delete(queue="a", states=[JobState.FAILED]) == 0
        assert broker.delete(queue="a") == 3
        assert broker.delete(states=[JobState.FAILED]) == len(failed)
        assert broker.stats() == []

    def test_prune_removes_old_finished_jobs_only(self, make_harness: HarnessFactory) -> None:
        harness = make_harness(keep_done=True)
        broker = harness.broker
        broker.put([new_job("q") for _ in range(4)])
        a, b, c = sorted(broker.claim(["q"], 3, LEASE), key=lambda j: j.id)
        broker.settle([ack(a), ack(b), fail(c)])
        harness.advance(3600)
        fresh = broker.claim(["q"], 1, LEASE)
        broker.settle([ack(job) for job in fresh])
        assert broker.prune(1800) == 2  # the two old done jobs, not the fresh one
        assert broker.prune(1800, states=[JobState.FAILED]) == 1
        assert [(s.done, s.failed) for s in broker.stats()] == [(1, 0)]
        with pytest.raises(ConfigurationError, match="finished"):
            broker.prune(0, states=[JobState.QUEUED])

    def test_deleting_a_finished_job_keeps_the_dedup_key_of_the_unfinished_one(
        self,
        broker: Broker,
    ) -> None:
        old = put_one(broker, dedup_key="k")
        _fail_all(broker, "q")  # the key is free again
        (holder,) = broker.put([new_job("q", dedup_key="k")])
        assert holder is not None
        assert broker.delete(ids=[old]) == 1  # a failed job with the same key
        assert broker.put([new_job("q", dedup_key="k")]) == [None]  # still held by `holder`

    def test_delete_and_prune_take_at_most_limit_jobs_a_call(
        self, make_harness: HarnessFactory
    ) -> None:
        harness = make_harness(keep_done=True)
        broker = harness.broker
        broker.put([new_job("q") for _ in range(7)] + [new_job("other") for _ in range(2)])
        broker.settle([ack(job) for job in broker.claim(["q"], 7, LEASE)])
        harness.advance(3600)
        assert [broker.prune(1800, limit=3) for _ in range(4)] == [3, 3, 1, 0]
        assert broker.delete(queue="other", limit=1) == 1
        assert broker.delete(queue="other", limit=5) == 1
        assert broker.stats() == []
        for bad in (0, -1, True, 2.5):
            with pytest.raises(ConfigurationError, match="limit"):
                broker.delete(limit=bad)  # type: ignore[arg-type]
            with pytest.raises(ConfigurationError, match="limit"):
                broker.prune(0, limit=bad)  # type: ignore[arg-type]

    def test_stats_count_each_state_per_queue(self, harness: Harness) -> None:
        broker = harness.broker
        broker.put([new_job("a") for _ in range(5)])
        broker.put([new_job("a", delay=100) for _ in range(2)])
        broker.put([new_job("b") for _ in range(3)])
        running = broker.claim(["a"], 2, LEASE)
        failed = broker.claim(["b"], 1, LEASE)
        broker.settle([fail(job) for job in failed])
        harness.advance(5)
        stats = {s.queue: s for s in broker.stats()}
        assert set(stats) == {"a", "b"}
        a, b = stats["a"], stats["b"]
        assert (a.ready, a.scheduled, a.running, a.failed, a.done) == (3, 2, len(running), 0, 0)
        assert (b.ready, b.scheduled, b.running, b.failed, b.done) == (2, 0, 0, 1, 0)
        assert a.queued == 5 and a.unfinished == 7
        assert a.oldest_ready_age is not None and 4 <= a.oldest_ready_age < 60
        assert [s.queue for s in broker.stats(["b", "empty"])] == ["b", "empty"]
        empty = broker.stats(["empty"])[0]
        assert (empty.unfinished, empty.oldest_ready_age) == (0, None)

    def test_jobs_listing_filters_and_pages(self, broker: Broker) -> None:
        ids = [i for i in broker.put([new_job("q", {"i": i}) for i in range(10)]) if i]
        page1 = broker.jobs(queue="q", limit=4)
        page2 = broker.jobs(queue="q", limit=4, after_id=page1[-1].id)
        assert [j.id for j in page1 + page2] == ids[:8]
        assert broker.jobs(queue="nope") == []
        assert broker.jobs(states=[JobState.RUNNING]) == []

    # -- wake-ups

    def test_subscribers_are_woken_for_their_queues(self, broker: Broker) -> None:
        needs(broker, Capability.WAKE_UPS)
        woken: list[str | None] = []
        event = threading.Event()

        def callback(queue: str | None) -> None:
            woken.append(queue)
            event.set()

        subscription = broker.subscribe(["mine"], callback)
        try:
            put_one(broker, "other")
            put_one(broker, "mine")
            assert event.wait(10)
            assert "mine" in woken
            assert "other" not in woken
        finally:
            subscription.close()

    def test_requeue_wakes_subscribers(self, broker: Broker) -> None:
        needs(broker, Capability.WAKE_UPS)
        put_one(broker)
        _fail_all(broker, "q")
        event = threading.Event()
        subscription = broker.subscribe(["q"], lambda queue: event.set())
        try:
            assert broker.requeue(queue="q") == 1
            assert event.wait(10)
        finally:
            subscription.close()

    # -- lifecycle

    def test_a_closed_broker_refuses_work(self, broker: Broker) -> None:
        broker.close()
        with pytest.raises(BrokerClosedError):
            broker.put([new_job()])
        with pytest.raises(BrokerClosedError):
            broker.claim(["q"], 1, LEASE)
        broker.close()  # idempotent
