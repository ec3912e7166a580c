"""The broker contract: every state transition, on every broker kind.

These tests run unchanged against the memory and the Postgres broker (the
``broker_kind`` parameter); time passes through ``harness.advance`` so no
test sleeps for a lease or a schedule.
"""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime

import msgspec
import pytest

from taskmaster_core import (
    Broker,
    BrokerClosedError,
    ConfigurationError,
    JobState,
    Lease,
    Settlement,
)
from tests.conftest import HarnessFactory
from tests.harness import Harness

from .helpers import ack, fail, info, new_job, put_one, retry

LEASE = 30.0


# -- putting ----------------------------------------------------------------


def test_put_stores_a_queued_job_with_every_field(broker: Broker) -> None:
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


def test_put_many_returns_ids_in_order(broker: Broker) -> None:
    ids = broker.put([new_job("q", {"i": i}) for i in range(50)])
    assert len(ids) == 50
    assert all(isinstance(i, int) for i in ids)
    assert len(set(ids)) == 50
    for i, job_id in enumerate(ids):
        assert job_id is not None
        stored = info(broker, job_id)
        assert stored is not None
        assert msgspec.json.decode(stored.payload) == {"i": i}


def test_payload_bytes_and_serializer_name_round_trip_exactly(broker: Broker) -> None:
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
    broker: Broker, queue: str, dedup_key: str | None, message: str
) -> None:
    """What Postgres cannot store, every broker refuses (an app tested on the
    memory broker must not break on Postgres), and the rest of the batch is
    not stored either."""
    batch = [new_job("fine"), new_job(queue, dedup_key=dedup_key)]
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        broker.put(batch)
    assert broker.jobs() == []


def test_the_longest_names_and_keys_are_stored(broker: Broker) -> None:
    queue, key = "é" * 1_000, "€" * 170  # 2,000 bytes; 510 bytes
    job_id = put_one(broker, queue, dedup_key=key)
    stored = info(broker, job_id)
    assert stored is not None and (stored.queue, stored.dedup_key) == (queue, key)


def test_put_with_nothing_is_a_no_op(broker: Broker) -> None:
    assert broker.put([]) == []
    assert broker.stats() == []


# -- claiming ---------------------------------------------------------------


def test_claim_marks_running_with_a_lease_and_counts_the_attempt(broker: Broker) -> None:
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


def test_a_claimed_job_is_not_claimed_again(broker: Broker) -> None:
    put_one(broker)
    assert len(broker.claim(["q"], 10, LEASE)) == 1
    assert broker.claim(["q"], 10, LEASE) == []


def test_claim_orders_by_priority_then_due_time_then_age(harness: Harness) -> None:
    broker = harness.broker
    low = put_one(broker, priority=0)
    high = put_one(broker, priority=10)
    low2 = put_one(broker, priority=0)
    early = put_one(broker, priority=0, delay=0.0)
    order = [job.id for job in broker.claim(["q"], 10, LEASE)]
    assert order == [high, low, low2, early]


def test_claim_respects_the_limit_and_the_queues(broker: Broker) -> None:
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


def test_claim_across_queues_takes_the_highest_priority_first(broker: Broker) -> None:
    put_one(broker, "a", priority=1)
    urgent = put_one(broker, "b", priority=9)
    (first,) = broker.claim(["a", "b"], 1, LEASE)
    assert first.id == urgent


def test_scheduled_jobs_wait_until_due(harness: Harness) -> None:
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


def test_concurrent_claims_hand_out_each_job_once(broker: Broker) -> None:
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


# -- outcomes ---------------------------------------------------------------


def test_ack_deletes_the_job(broker: Broker) -> None:
    job_id = put_one(broker)
    (claimed,) = broker.claim(["q"], 1, LEASE)
    assert broker.settle([ack(claimed)]) == []
    assert info(broker, job_id) is None
    assert broker.stats() == []


def test_ack_in_keep_done_mode_marks_done(make_harness: HarnessFactory) -> None:
    broker = make_harness(keep_done=True).broker
    job_id = put_one(broker)
    (claimed,) = broker.claim(["q"], 1, LEASE)
    assert broker.settle([ack(claimed)]) == []
    stored = info(broker, job_id)
    assert stored is not None
    assert stored.state is JobState.DONE
    assert stored.lease_until is None
    assert [(s.queue, s.done) for s in broker.stats()] == [("q", 1)]


def test_fail_keeps_the_job_with_its_error(broker: Broker) -> None:
    job_id = put_one(broker)
    (claimed,) = broker.claim(["q"], 1, LEASE)
    assert broker.settle([fail(claimed, "ValueError: bad input")]) == []
    (stored,) = broker.jobs(states=[JobState.FAILED])
    assert stored.id == job_id
    assert stored.last_error == "ValueError: bad input"
    assert stored.attempts == 1
    assert stored.lease_until is None
    assert broker.claim(["q"], 1, LEASE) == []


def test_retry_requeues_later_and_counts_the_attempt(harness: Harness) -> None:
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


def test_one_settle_batch_mixes_every_kind(make_harness: HarnessFactory) -> None:
    broker = make_harness(keep_done=True).broker
    ids = broker.put([new_job("q", {"i": i}) for i in range(3)])
    a, b, c = sorted(broker.claim(["q"], 3, LEASE), key=lambda j: j.id)
    assert broker.settle([ack(a), fail(b), retry(c, delay=0)]) == []
    states = {j.id: j.state for j in broker.jobs(ids=[i for i in ids if i is not None])}
    assert states == {a.id: JobState.DONE, b.id: JobState.FAILED, c.id: JobState.QUEUED}


# -- leases and fencing -----------------------------------------------------


def test_an_expired_lease_is_reclaimed_and_the_stale_worker_fenced_out(
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


def test_a_lost_worker_on_the_last_attempt_fails_the_job(harness: Harness) -> None:
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


def test_extend_keeps_a_lease_alive(harness: Harness) -> None:
    broker = harness.broker
    job_id = put_one(broker)
    (claimed,) = broker.claim(["q"], 1, 10)
    harness.advance(8)
    assert broker.extend([Lease(claimed.id, claimed.token)], 10) == []
    harness.advance(8)
    assert broker.claim(["q"], 1, 10) == []
    assert broker.settle([ack(claimed)]) == []
    assert info(broker, job_id) is None


def test_release_returns_a_job_without_counting_the_attempt(broker: Broker) -> None:
    job_id = put_one(broker)
    (claimed,) = broker.claim(["q"], 1, LEASE)
    assert broker.release([Lease(claimed.id, claimed.token)]) == 1
    stored = info(broker, job_id)
    assert stored is not None
    assert (stored.state, stored.attempts) == (JobState.QUEUED, 0)
    (again,) = broker.claim(["q"], 1, LEASE)
    assert (again.id, again.attempt) == (job_id, 1)


def test_a_settled_job_cannot_be_settled_twice(broker: Broker) -> None:
    put_one(broker)
    (claimed,) = broker.claim(["q"], 1, LEASE)
    assert broker.settle([fail(claimed)]) == []
    assert broker.settle([ack(claimed)]) == [claimed.id]
    assert broker.settle([Settlement(id=999_999, token=1, kind="ack")]) == [999_999]


# -- dedup keys -------------------------------------------------------------


def test_dedup_key_allows_one_unfinished_job_per_queue(broker: Broker) -> None:
    first = put_one(broker, dedup_key="user-7")
    assert broker.put([new_job("q", dedup_key="user-7")]) == [None]
    assert broker.put([new_job("other", dedup_key="user-7")])[0] is not None
    (claimed,) = broker.claim(["q"], 1, LEASE)
    assert claimed.id == first
    assert broker.put([new_job("q", dedup_key="user-7")]) == [None]  # running still holds it
    broker.settle([ack(claimed)])
    assert broker.put([new_job("q", dedup_key="user-7")])[0] is not None


def test_dedup_within_one_batch_keeps_the_first(broker: Broker) -> None:
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


def test_a_failed_job_frees_its_dedup_key(broker: Broker) -> None:
    put_one(broker, dedup_key="k")
    (claimed,) = broker.claim(["q"], 1, LEASE)
    broker.settle([fail(claimed)])
    assert broker.put([new_job("q", dedup_key="k")])[0] is not None


# -- operations -------------------------------------------------------------


def _fail_all(broker: Broker, queue: str) -> list[int]:
    claimed = broker.claim([queue], 100, LEASE)
    broker.settle([fail(job) for job in claimed])
    return sorted(job.id for job in claimed)


def test_requeue_by_ids_resets_attempts_and_keeps_others_failed(broker: Broker) -> None:
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


def test_requeue_a_whole_queue(broker: Broker) -> None:
    broker.put([new_job("a") for _ in range(3)] + [new_job("b")])
    _fail_all(broker, "a")
    _fail_all(broker, "b")
    assert broker.requeue(queue="a") == 3
    counts = {s.queue: (s.ready, s.failed) for s in broker.stats()}
    assert counts == {"a": (3, 0), "b": (0, 1)}
    assert broker.requeue() == 1
    assert broker.stats(["b"])[0].ready == 1


def test_requeue_skips_a_job_whose_dedup_key_is_taken(broker: Broker) -> None:
    old = put_one(broker, dedup_key="k")
    _fail_all(broker, "q")
    newer = put_one(broker, dedup_key="k")
    assert broker.requeue(ids=[old]) == 0
    stored = info(broker, old)
    assert stored is not None
    assert stored.state is JobState.FAILED
    assert info(broker, newer) is not None


def test_delete_by_queue_ids_and_states(broker: Broker) -> None:
    broker.put([new_job("a") for _ in range(4)] + [new_job("b") for _ in range(2)])
    failed = _fail_all(broker, "b")
    ids_a = sorted(j.id for j in broker.jobs(queue="a"))
    assert broker.delete(ids=ids_a[:1]) == 1
    assert broker.delete(queue="a", states=[JobState.FAILED]) == 0
    assert broker.delete(queue="a") == 3
    assert broker.delete(states=[JobState.FAILED]) == len(failed)
    assert broker.stats() == []


def test_prune_removes_old_finished_jobs_only(make_harness: HarnessFactory) -> None:
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
    broker: Broker,
) -> None:
    (old,) = broker.put([new_job("q", dedup_key="k")])
    _fail_all(broker, "q")  # the key is free again
    (holder,) = broker.put([new_job("q", dedup_key="k")])
    assert holder is not None
    assert broker.delete(ids=[old]) == 1  # a failed job with the same key
    assert broker.put([new_job("q", dedup_key="k")]) == [None]  # still held by `holder`


def test_delete_and_prune_take_at_most_limit_jobs_a_call(make_harness: HarnessFactory) -> None:
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
        with pytest.raises(ConfigurationError, match="limit must be None or an int >= 1"):
            broker.delete(limit=bad)  # type: ignore[arg-type]
        with pytest.raises(ConfigurationError, match="limit must be None or an int >= 1"):
            broker.prune(0, limit=bad)  # type: ignore[arg-type]


def test_stats_count_each_state_per_queue(harness: Harness) -> None:
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


def test_jobs_listing_filters_and_pages(broker: Broker) -> None:
    ids = [i for i in broker.put([new_job("q", {"i": i}) for i in range(10)]) if i]
    page1 = broker.jobs(queue="q", limit=4)
    page2 = broker.jobs(queue="q", limit=4, after_id=page1[-1].id)
    assert [j.id for j in page1 + page2] == ids[:8]
    assert broker.jobs(queue="nope") == []
    assert broker.jobs(states=[JobState.RUNNING]) == []


# -- wake-ups ---------------------------------------------------------------


def test_subscribers_are_woken_for_their_queues(broker: Broker) -> None:
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


def test_requeue_wakes_subscribers(broker: Broker) -> None:
    put_one(broker)
    _fail_all(broker, "q")
    event = threading.Event()
    subscription = broker.subscribe(["q"], lambda queue: event.set())
    try:
        assert broker.requeue(queue="q") == 1
        assert event.wait(10)
    finally:
        subscription.close()


# -- lifecycle --------------------------------------------------------------


def test_a_closed_broker_refuses_work(broker: Broker) -> None:
    broker.close()
    with pytest.raises(BrokerClosedError):
        broker.put([new_job()])
    with pytest.raises(BrokerClosedError):
        broker.claim(["q"], 1, LEASE)
    broker.close()  # idempotent
