"""Scenario 6: SIGTERM while about a thousand jobs are in flight."""

from __future__ import annotations

import signal

import pytest

from taskmaster_core import Publisher

from .helpers import ChaosDB, chaos_seed, wait_for

pytestmark = [pytest.mark.chaos, pytest.mark.postgres]


def test_sigterm_under_load_loses_nothing_and_leaves_nothing_running(chaos: ChaosDB) -> None:
    seed = chaos_seed()
    ids = Publisher(chaos.broker).put_many(
        "q", [{"do": "ack", "max_sleep": 0.04} for _ in range(2000)]
    )
    put = [i for i in ids if i is not None]
    # prefetch 500: each worker holds ~500 claimed jobs, 8 of them running.
    settings = {"lease": 5, "concurrency": 8, "prefetch": 500, "seed": seed}
    workers = [chaos.start_worker(**settings) for _ in range(2)]

    def in_flight() -> int:
        rows = chaos.rows().values()
        return sum(r.state == "running" for r in rows)

    wait_for(lambda: in_flight() >= 900 and len(chaos.runs()) >= 50, 30, "~1000 jobs in flight")
    held = in_flight()
    for worker in workers:
        worker.signal(signal.SIGTERM)
    codes = [worker.wait(20) for worker in workers]
    assert codes == [0, 0], [w.log()[-2000:] for w in workers]

    # Stopped: nothing running, everything either done or back in the queue
    # with the unused attempt given back, and no job ran twice.
    tally = chaos.account(put, allow_queued=True)
    assert "running" not in tally.states
    assert tally.states["queued"] > 0, "the stop came too late to return unstarted jobs"
    ran = {r.job_id for r in chaos.runs()}
    for job_id, row in chaos.rows().items():
        if row.state == "queued":
            assert job_id not in ran and row.attempts == 0, (job_id, row)
    print(f"{held} jobs were in flight at SIGTERM; {tally.states}")

    finisher = chaos.start_worker(**settings)
    chaos.wait_finished(60, workers=[finisher])
    tally = chaos.account(put)
    assert tally.states == {"done": 2000}
    assert tally.runs == 2000  # every job exactly once, across the stop


def test_a_handler_that_outlasts_the_stop_timeout_is_abandoned_and_retried(
    chaos: ChaosDB,
) -> None:
    stuck = chaos.start_worker(lease=1, concurrency=2, poll=0.2, stop_timeout=1)
    chaos.wait_ready(stuck)
    job_id = Publisher(chaos.broker).put("q", {"script": ["block", "ack"]})
    assert job_id is not None
    wait_for(lambda: chaos.runs(), 10, "the handler started")
    stuck.signal(signal.SIGTERM)
    assert stuck.wait(10) == 3  # EXIT_HANDLERS_ABANDONED
    assert "stopped with 1 handler(s) still running" in stuck.log()
    # Its job stays running until the lease expires, then runs elsewhere.
    rescuer = chaos.start_worker(lease=1, concurrency=1, poll=0.2)
    chaos.wait_finished(20, workers=[rescuer])
    chaos.account([job_id], died=[stuck.pid])
    assert chaos.rows()[job_id].last_error == "worker lost: lease expired during attempt 1"
