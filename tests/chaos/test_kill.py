"""Scenario 1: workers killed with SIGKILL in the middle of handlers."""

from __future__ import annotations

import random
import signal

import pytest

from taskmaster_core import Publisher

from .helpers import ChaosDB, Worker, chaos_seed, wait_for

pytestmark = [pytest.mark.chaos, pytest.mark.postgres]


def test_jobs_of_killed_workers_come_back_and_complete_elsewhere(chaos: ChaosDB) -> None:
    seed = chaos_seed()
    rng = random.Random(seed)
    settings = {"lease": 1, "concurrency": 4, "seed": seed, "poll": 0.2}
    workers = [chaos.start_worker(**settings) for _ in range(3)]
    chaos.wait_ready(*workers)
    ids = Publisher(chaos.broker, max_attempts=10).put_many(
        "q", [{"do": "ack", "max_sleep": 0.12} for _ in range(800)]
    )
    killed: list[int] = []
    while len(killed) < 4 and chaos.unfinished() > 150:
        victim = rng.choice([w for w in workers if w.alive])
        # Kill it while it is inside a handler: it has started runs lately.
        started = len([r for r in chaos.runs() if r.pid == victim.pid])
        wait_for(
            lambda v=victim, n=started: len([r for r in chaos.runs() if r.pid == v.pid]) > n,
            10,
            f"{victim} running handlers",
        )
        victim.signal(signal.SIGKILL)
        assert victim.wait(10) == -signal.SIGKILL
        killed.append(victim.pid)
        workers.remove(victim)
        workers.append(chaos.start_worker(**settings))
        chaos.wait_ready(workers[-1])
    assert len(killed) >= 3, "the jobs ran out before the workers could be killed"
    chaos.wait_finished(60, workers=workers)

    tally = chaos.account([i for i in ids if i is not None], died=killed)
    assert tally.states == {"done": 800}
    assert tally.reruns_after_death >= len(killed) - 1  # killed mid-handler: those jobs ran again
    rows = chaos.rows()
    runs = chaos.runs()
    last = {r.job_id: r for r in sorted(runs, key=lambda r: r.attempt)}
    interrupted = {r.job_id for r in runs if r.pid in killed and last[r.job_id] != r}
    assert interrupted
    for job_id in interrupted:
        row = rows[job_id]
        assert row.attempts >= 2, row  # the lost attempt counts
        assert (row.last_error or "").startswith("worker lost: lease expired during attempt"), row


def test_a_worker_lost_on_the_last_attempt_fails_the_job(chaos: ChaosDB) -> None:
    publisher = Publisher(chaos.broker)
    (doomed,) = [publisher.put("q", {"do": "ack", "sleep": 60}, max_attempts=2)]
    assert doomed is not None
    killed: list[int] = []
    for attempt in (1, 2):
        worker = chaos.start_worker(lease=1, concurrency=1, poll=0.2)
        wait_for(
            lambda a=attempt: any(r.attempt == a for r in chaos.runs()),
            30,
            f"attempt {attempt} running",
        )
        worker.signal(signal.SIGKILL)
        worker.wait(10)
        killed.append(worker.pid)
    survivor: Worker = chaos.start_worker(lease=1, concurrency=1, poll=0.2)
    after = publisher.put("q", {"do": "ack"})
    assert after is not None
    chaos.wait_finished(30, workers=[survivor])

    chaos.account([doomed, after], died=killed)
    rows = chaos.rows()
    assert rows[doomed].state == "failed"
    assert rows[doomed].attempts == 2
    assert rows[doomed].last_error == "worker lost: lease expired during attempt 2 of 2"
    assert rows[after].state == "done"
