"""The broker contract, settling: outcomes, leases and fencing, dedup keys.

Part of the broker contract (:class:`taskmaster_core.testing.BrokerContract`):
these tests run unchanged against every broker kind; time passes through
``harness.advance``, so no test sleeps for a lease or a schedule.
"""

from __future__ import annotations

import msgspec

from taskmaster_core import Broker, JobState, Lease, Settlement

from ._base import LEASE, ContractBase
from ._builders import ack, fail, info, new_job, put_one, retry
from ._harness import Harness, HarnessFactory

__all__ = ["SettleContract"]


class SettleContract(ContractBase):
    """Ack, fail and retry; leases, reclaiming and fencing out stale workers; dedup keys."""

    # -- outcomes

    def test_ack_deletes_the_job(self, broker: Broker) -> None:
        job_id = put_one(broker)
        (claimed,) = broker.claim(["q"], 1, LEASE)
        assert broker.settle([ack(claimed)]) == []
        assert info(broker, job_id) is None
        assert broker.stats() == []

    def test_ack_in_keep_done_mode_marks_done(self, make_harness: HarnessFactory) -> None:
        broker = make_harness(keep_done=True).broker
        job_id = put_one(broker)
        (claimed,) = broker.claim(["q"], 1, LEASE)
        assert broker.settle([ack(claimed)]) == []
        stored = info(broker, job_id)
        assert stored is not None
        assert stored.state is JobState.DONE
        assert stored.lease_until is None
        assert [(s.queue, s.done) for s in broker.stats()] == [("q", 1)]

    def test_fail_keeps_the_job_with_its_error(self, broker: Broker) -> None:
        job_id = put_one(broker)
        (claimed,) = broker.claim(["q"], 1, LEASE)
        assert broker.settle([fail(claimed, "ValueError: bad input")]) == []
        (stored,) = broker.jobs(states=[JobState.FAILED])
        assert stored.id == job_id
        assert stored.last_error == "ValueError: bad input"
        assert stored.attempts == 1
        assert stored.lease_until is None
        assert broker.claim(["q"], 1, LEASE) == []

    def test_retry_requeues_later_and_counts_the_attempt(self, harness: Harness) -> None:
        broker = harness.broker
        job_id = put_one(broker, max_attempts=5)
        (claimed,) = broker.claim(["q"], 1, LEASE)
        assert broker.settle([retry(claimed, delay=20, error="flaky")]) == []
        stored = info(broker, job_id)
        assert stored is not None
        assert (stored.state, stored.attempts, stored.last_error) == (JobState.QUEUED, 1, "flaky")
        assert broker.claim(["q"], 1, LEASE) == []
        assert broker.stats()[0].scheduled == 1
        harness.advance(21)
        (again,) = broker.claim(["q"], 1, LEASE)
        assert (again.id, again.attempt) == (job_id, 2)
        assert again.token != claimed.token

    def test_one_settle_batch_mixes_every_kind(self, make_harness: HarnessFactory) -> None:
        broker = make_harness(keep_done=True).broker
        ids = broker.put([new_job("q", {"i": i}) for i in range(3)])
        a, b, c = sorted(broker.claim(["q"], 3, LEASE), key=lambda j: j.id)
        assert broker.settle([ack(a), fail(b), retry(c, delay=0)]) == []
        states = {j.id: j.state for j in broker.jobs(ids=[i for i in ids if i is not None])}
        assert states == {a.id: JobState.DONE, b.id: JobState.FAILED, c.id: JobState.QUEUED}

    # -- leases and fencing

    def test_an_expired_lease_is_reclaimed_and_the_stale_worker_fenced_out(
        self,
        harness: Harness,
    ) -> None:
        broker = harness.broker
        job_id = put_one(broker, max_attempts=3)
        (first,) = broker.claim(["q"], 1, 10)
        harness.advance(11)
        (second,) = broker.claim(["q"], 1, 10)
        assert (second.id, second.attempt) == (job_id, 2)
        assert second.token != first.token
        # The first worker comes back late: every operation under its token is refused.
        assert broker.extend([Lease(first.id, first.token)], 10) == [job_id]
        assert broker.settle([ack(first)]) == [job_id]
        assert broker.release([Lease(first.id, first.token)]) == 0
        stored = info(broker, job_id)
        assert stored is not None
        assert (stored.state, stored.attempts) == (JobState.RUNNING, 2)
        assert broker.settle([ack(second)]) == []
        assert info(broker, job_id) is None

    def test_a_lost_worker_on_the_last_attempt_fails_the_job(self, harness: Harness) -> None:
        broker = harness.broker
        job_id = put_one(broker, max_attempts=1)
        broker.claim(["q"], 1, 10)
        harness.advance(11)
        assert broker.claim(["q"], 1, 10) == []
        stored = info(broker, job_id)
        assert stored is not None
        assert stored.state is JobState.FAILED
        assert stored.last_error is not None
        assert "worker lost" in stored.last_error

    def test_extend_keeps_a_lease_alive(self, harness: Harness) -> None:
        broker = harness.broker
        job_id = put_one(broker)
        (claimed,) = broker.claim(["q"], 1, 10)
        harness.advance(8)
        assert broker.extend([Lease(claimed.id, claimed.token)], 10) == []
        harness.advance(8)
        assert broker.claim(["q"], 1, 10) == []
        assert broker.settle([ack(claimed)]) == []
        assert info(broker, job_id) is None

    def test_release_returns_a_job_without_counting_the_attempt(self, broker: Broker) -> None:
        job_id = put_one(broker)
        (claimed,) = broker.claim(["q"], 1, LEASE)
        assert broker.release([Lease(claimed.id, claimed.token)]) == 1
        stored = info(broker, job_id)
        assert stored is not None
        assert (stored.state, stored.attempts) == (JobState.QUEUED, 0)
        (again,) = broker.claim(["q"], 1, LEASE)
        assert (again.id, again.attempt) == (job_id, 1)

    def test_a_settled_job_cannot_be_settled_twice(self, broker: Broker) -> None:
        put_one(broker)
        (claimed,) = broker.claim(["q"], 1, LEASE)
        assert broker.settle([fail(claimed)]) == []
        assert broker.settle([ack(claimed)]) == [claimed.id]
        assert broker.settle([Settlement(id=999_999, token=1, kind="ack")]) == [999_999]

    # -- dedup keys

    def test_dedup_key_allows_one_unfinished_job_per_queue(self, broker: Broker) -> None:
        first = put_one(broker, dedup_key="user-7")
        assert broker.put([new_job("q", dedup_key="user-7")]) == [None]
        assert broker.put([new_job("other", dedup_key="user-7")])[0] is not None
        (claimed,) = broker.claim(["q"], 1, LEASE)
        assert claimed.id == first
        assert broker.put([new_job("q", dedup_key="user-7")]) == [None]  # running still holds it
        broker.settle([ack(claimed)])
        assert broker.put([new_job("q", dedup_key="user-7")])[0] is not None

    def test_dedup_within_one_batch_keeps_the_first(self, broker: Broker) -> None:
        ids = broker.put(
            [
                new_job("q", {"i": 0}, dedup_key="k"),
                new_job("q", {"i": 1}),
                new_job("q", {"i": 2}, dedup_key="k"),
            ]
        )
        assert ids[0] is not None and ids[1] is not None
        assert ids[2] is None
        stored = info(broker, ids[0])
        assert stored is not None
        assert msgspec.json.decode(stored.payload) == {"i": 0}

    def test_a_failed_job_frees_its_dedup_key(self, broker: Broker) -> None:
        put_one(broker, dedup_key="k")
        (claimed,) = broker.claim(["q"], 1, LEASE)
        broker.settle([fail(claimed)])
        assert broker.put([new_job("q", dedup_key="k")])[0] is not None
