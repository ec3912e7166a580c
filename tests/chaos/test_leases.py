"""Scenario 7: a handler slower than its lease; a heartbeat that stops."""

from __future__ import annotations

import signal

import pytest

from taskmaster_core import Publisher

from .helpers import ChaosDB, wait_for

pytestmark = [pytest.mark.chaos, pytest.mark.postgres]


def test_the_heartbeat_keeps_a_lease_shorter_than_the_handler(chaos: ChaosDB) -> None:
    slow = chaos.start_worker(lease=1, concurrency=1, poll=0.2)
    chaos.wait_ready(slow)
    job_id = Publisher(chaos.broker).put("q", {"do": "ack", "sleep": 3.5})
    assert job_id is not None
    wait_for(lambda: chaos.runs(), 10, "the slow handler started")
    # A rival polls the queue (each claim reclaims expired leases) all along.
    rival = chaos.start_worker(lease=1, concurrency=1, poll=0.2)
    chaos.wait_ready(rival)
    chaos.wait_finished(20, workers=[slow, rival])

    chaos.account([job_id])
    (run,) = chaos.runs()
    assert run.pid == slow.pid
    assert chaos.rows()[job_id].attempts == 1


def test_a_stale_worker_cannot_complete_a_job_taken_over_by_another(chaos: ChaosDB) -> None:
    # The stale worker's lease extensions never reach the database (as if it
    # were cut off from it, or frozen); its handler keeps running.
    # prefetch=0: it holds only the job it runs (see the next test for prefetched jobs).
    stale = chaos.start_worker(lease=1, concurrency=1, prefetch=0, poll=0.2, no_heartbeat=1)
    chaos.wait_ready(stale)
    job_id = Publisher(chaos.broker).put("q", {"do": "ack", "sleep": 4, "sleep_attempts": [1]})
    assert job_id is not None
    wait_for(lambda: chaos.runs(), 10, "the stale worker started the job")
    rescuer = chaos.start_worker(lease=1, concurrency=1, poll=0.2)
    chaos.wait_finished(20, workers=[rescuer])  # taken over after the lease expired

    # The stale worker finishes later; its ack carries the old claim token.
    wait_for(lambda: "were refused" in stale.log(), 20, "the stale ack refused")
    assert f"outcomes of jobs [{job_id}] were refused" in stale.log()
    chaos.account([job_id], died=[stale.pid])
    first, second = sorted(chaos.runs(), key=lambda r: r.attempt)
    assert (first.pid, first.attempt) == (stale.pid, 1)
    assert (second.pid, second.attempt) == (rescuer.pid, 2)
    row = chaos.rows()[job_id]
    assert row.state == "done" and row.attempts == 2, row
    assert row.last_error == "worker lost: lease expired during attempt 1"


def test_a_frozen_worker_does_not_run_prefetched_jobs_it_has_lost(chaos: ChaosDB) -> None:
    frozen = chaos.start_worker(lease=1, concurrency=1, prefetch=8, poll=0.2)
    chaos.wait_ready(frozen)
    publisher = Publisher(chaos.broker)
    ids = publisher.put_many(
        "q", [{"do": "ack", "sleep": 2, "sleep_attempts": [1]}] + [{"do": "ack"}] * 5
    )
    put = [i for i in ids if i is not None]
    wait_for(lambda: chaos.runs(), 10, "the first job started")
    assert sum(r.state == "running" for r in chaos.rows().values()) == 6  # 1 running, 5 held
    frozen.signal(signal.SIGSTOP)  # a long GC pause, a suspended VM...
    try:
        rescuer = chaos.start_worker(lease=1, concurrency=2, poll=0.2)
        chaos.wait_finished(20, workers=[rescuer])
    finally:
        frozen.signal(signal.SIGCONT)
    wait_for(lambda: "were refused" in frozen.log(), 20, "the frozen worker's late ack refused")

    chaos.account(put, died=[frozen.pid])
    # The frozen worker may finish the handler it was in (its outcome is
    # refused), but must not start the five jobs it no longer holds.
    by_frozen = [r for r in chaos.runs() if r.pid == frozen.pid]
    assert [r.job_id for r in by_frozen] == [put[0]], by_frozen
