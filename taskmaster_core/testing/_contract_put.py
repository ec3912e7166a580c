"""The broker contract, putting and claiming.

Part of the broker contract (:class:`taskmaster_core.testing.BrokerContract`):
these tests run unchanged against every broker kind; time passes through
``harness.advance``, so no test sleeps for a lease or a schedule.
"""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime

import msgspec
import pytest

from taskmaster_core import Broker, ConfigurationError, JobState

from ._base import LEASE, ContractBase
from ._builders import ack, info, new_job, put_one
from ._harness import Harness

__all__ = ["PutClaimContract"]


class PutClaimContract(ContractBase):
    """Putting jobs (every field, batches, refused names) and claiming them."""

    # -- putting

    def test_put_stores_a_queued_job_with_every_field(self, broker: Broker) -> None:
        job_id = put_one(
            broker,
            "emails",
            {"to": "a@b.c"},
            priority=5,
            max_attempts=7,
            dedup_key="k1",
            headers={"trace": "abc"},
        )
        stored = info(broker, job_id)
        assert stored is not None
        assert stored.queue == "emails"
        assert stored.state is JobState.QUEUED
        assert msgspec.json.decode(stored.payload) == {"to": "a@b.c"}
        assert stored.serializer == "json"
        assert (stored.priority, stored.attempts, stored.max_attempts) == (5, 0, 7)
        assert stored.dedup_key == "k1"
        assert stored.headers == {"trace": "abc"}
        assert stored.last_error is None
        assert stored.lease_until is None
        assert stored.run_at.tzinfo is not None
        assert abs((stored.run_at - stored.created_at).total_seconds()) < 1

    def test_put_many_returns_ids_in_order(self, broker: Broker) -> None:
        ids = broker.put([new_job("q", {"i": i}) for i in range(50)])
        assert len(ids) == 50
        assert all(isinstance(i, int) for i in ids)
        assert len(set(ids)) == 50
        for i, job_id in enumerate(ids):
            assert job_id is not None
            stored = info(broker, job_id)
            assert stored is not None
            assert msgspec.json.decode(stored.payload) == {"i": i}

    def test_payload_bytes_and_serializer_name_round_trip_exactly(self, broker: Broker) -> None:
        raw = bytes(range(256)) * 3
        (job_id,) = broker.put(
            [new_job("bin").__class__(queue="bin", payload=raw, serializer="msgpack")]
        )
        (claimed,) = broker.claim(["bin"], 1, LEASE)
        assert claimed.id == job_id
        assert claimed.payload == raw
        assert claimed.serializer == "msgpack"

    @pytest.mark.parametrize(
        ("queue", "dedup_key", "message"),
        [
            ("q" * 2_400, None, "queue name of 2400 characters is over the limit of 1000"),
            ("é" * 1_001, None, "queue name of 1001 characters is over the limit of 1000"),
            ("€" * 700, None, "is 2100 bytes in UTF-8, over the limit of 2000 bytes"),
            ("", None, "queue name must be a non-empty string"),
            ("a\x00b", None, "contains a NUL character"),
            ("q", "k" * 513, "dedup key is 513 bytes in UTF-8, over the limit of 512 bytes"),
            ("q", "", "dedup key must be a non-empty string"),
            ("q", "a\x00b", "contains a NUL character"),
        ],
        ids=[
            "long-queue",
            "many-chars",
            "many-bytes",
            "empty-queue",
            "nul-queue",
            "long-key",
            "empty-key",
            "nul-key",
        ],
    )
    def test_put_refuses_names_and_keys_no_broker_can_store_and_stores_nothing(
        self, broker: Broker, queue: str, dedup_key: str | None, message: str
    ) -> None:
        """What Postgres cannot store, every broker refuses (an app tested on the
        memory broker must not break on Postgres), and the rest of the batch is
        not stored either."""
        batch = [new_job("fine"), new_job(queue, dedup_key=dedup_key)]
        with pytest.raises(ConfigurationError, match=re.escape(message)):
            broker.put(batch)
        assert broker.jobs() == []

    def test_the_longest_names_and_keys_are_stored(self, broker: Broker) -> None:
        queue, key = "é" * 1_000, "€" * 170  # 2,000 bytes; 510 bytes
        job_id = put_one(broker, queue, dedup_key=key)
        stored = info(broker, job_id)
        assert stored is not None and (stored.queue, stored.dedup_key) == (queue, key)

    def test_put_with_nothing_is_a_no_op(self, broker: Broker) -> None:
        assert broker.put([]) == []
        assert broker.stats() == []

    # -- claiming

    def test_claim_marks_running_with_a_lease_and_counts_the_attempt(self, broker: Broker) -> None:
        job_id = put_one(broker, headers={"h": "v"})
        (claimed,) = broker.claim(["q"], 10, LEASE)
        assert claimed.id == job_id
        assert claimed.attempt == 1
        assert claimed.headers == {"h": "v"}
        stored = info(broker, job_id)
        assert stored is not None
        assert stored.state is JobState.RUNNING
        assert stored.attempts == 1
        assert stored.lease_until is not None
        lease_left = (stored.lease_until - datetime.now(UTC)).total_seconds()
        assert LEASE - 5 < lease_left <= LEASE + 1

    def test_a_claimed_job_is_not_claimed_again(self, broker: Broker) -> None:
        put_one(broker)
        assert len(broker.claim(["q"], 10, LEASE)) == 1
        assert broker.claim(["q"], 10, LEASE) == []

    def test_claim_orders_by_priority_then_due_time_then_age(self, harness: Harness) -> None:
        broker = harness.broker
        low = put_one(broker, priority=0)
        high = put_one(broker, priority=10)
        low2 = put_one(broker, priority=0)
        early = put_one(broker, priority=0, delay=0.0)
        order = [job.id for job in broker.claim(["q"], 10, LEASE)]
        assert order == [high, low, low2, early]

    def test_claim_respects_the_limit_and_the_queues(self, broker: Broker) -> None:
        for _ in range(5):
            put_one(broker, "a")
        put_one(broker, "b")
        put_one(broker, "c")
        first = broker.claim(["a"], 3, LEASE)
        assert [job.queue for job in first] == ["a"] * 3
        both = broker.claim(["a", "b"], 10, LEASE)
        assert sorted(job.queue for job in both) == ["a", "a", "b"]
        assert broker.claim(["zzz"], 10, LEASE) == []
        assert [s.ready for s in broker.stats(["c"])] == [1]

    def test_claim_across_queues_takes_the_highest_priority_first(self, broker: Broker) -> None:
        put_one(broker, "a", priority=1)
        urgent = put_one(broker, "b", priority=9)
        (first,) = broker.claim(["a", "b"], 1, LEASE)
        assert first.id == urgent

    def test_scheduled_jobs_wait_until_due(self, harness: Harness) -> None:
        broker = harness.broker
        later = put_one(broker, delay=60)
        soon = put_one(broker, run_at=datetime.now(UTC).timestamp() + 10)
        assert broker.claim(["q"], 10, LEASE) == []
        (stats,) = broker.stats()
        assert (stats.ready, stats.scheduled) == (0, 2)
        harness.advance(11)
        claimed = broker.claim(["q"], 10, LEASE)
        assert [job.id for job in claimed] == [soon]
        broker.settle([ack(job) for job in claimed])
        harness.advance(50)
        assert [job.id for job in broker.claim(["q"], 10, LEASE)] == [later]

    def test_concurrent_claims_hand_out_each_job_once(self, broker: Broker) -> None:
        broker.put([new_job("q", {"i": i}) for i in range(400)])
        seen: list[int] = []
        lock = threading.Lock()

        def claimer() -> None:
            while True:
                jobs = broker.claim(["q"], 7, LEASE)
                if not jobs:
                    return
                with lock:
                    seen.extend(job.id for job in jobs)

        threads = [threading.Thread(target=claimer) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert len(seen) == 400
        assert len(set(seen)) == 400
