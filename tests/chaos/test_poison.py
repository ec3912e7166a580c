"""Scenario 5: poison jobs fail with a clear error; the worker lives, other jobs flow."""

from __future__ import annotations

import signal

import pytest

from taskmaster_core import NewJob, Publisher

from .helpers import ChaosDB

pytestmark = [pytest.mark.chaos, pytest.mark.postgres]


def test_poison_jobs_fail_clearly_and_the_worker_keeps_going(chaos: ChaosDB) -> None:
    worker = chaos.start_worker(
        lease=2, concurrency=2, poll=0.2, job_timeout=1, payload_type="counter"
    )
    chaos.wait_ready(worker)
    publisher = Publisher(chaos.broker)
    good = [i for i in publisher.put_many("q", [{"n": i} for i in range(50)]) if i is not None]
    undecodable, unknown_serializer = chaos.broker.put(
        [
            NewJob(queue="q", payload=b"\xff\xfe{not json", serializer="json"),
            NewJob(queue="q", payload=b'{"n": 1}', serializer="not-installed"),
        ]
    )
    wrong_type = publisher.put("q", {"n": "not a number"})
    exits = publisher.put("q", {"n": 1, "do": "exit"}, max_attempts=2)
    hangs = publisher.put("q", {"n": 2, "do": "block"}, max_attempts=2)
    raises = publisher.put("q", {"n": 3, "do": "raise"}, max_attempts=2)
    good += [i for i in publisher.put_many("q", [{"n": i} for i in range(50)]) if i is not None]
    poison = [undecodable, unknown_serializer, wrong_type, exits, hangs, raises]
    assert None not in poison
    chaos.wait_finished(30, workers=[worker])
    # Jobs put after both worker threads got stuck still run (replacement threads).
    late = publisher.put("q", {"n": 4})
    assert late is not None
    chaos.wait_finished(10, workers=[worker])

    tally = chaos.account([*good, *poison, late])
    assert tally.states == {"done": 101, "failed": 6}
    errors = {i: chaos.rows()[i].last_error or "" for i in poison}
    assert errors[undecodable].startswith("cannot decode payload: ")
    assert errors[unknown_serializer].startswith(
        "cannot decode payload: unknown serializer 'not-installed'"
    )
    assert errors[wrong_type].startswith("cannot decode payload: ")
    assert "Expected `int`, got `str`" in errors[wrong_type]
    assert errors[exits].startswith("attempts used up (2/2): SystemExit: chaos: job")
    assert errors[hangs] == "attempts used up (2/2): handler timed out after 1s"
    assert errors[raises].startswith("attempts used up (2/2): RuntimeError: chaos: job")
    assert worker.alive
    assert "error=handler timed out after 1s; its thread is abandoned and replaced" in worker.log()


def test_a_handler_that_crashes_the_process_fails_only_its_job(chaos: ChaosDB) -> None:
    crashing = chaos.start_worker(lease=1, concurrency=2, poll=0.2)
    chaos.wait_ready(crashing)
    publisher = Publisher(chaos.broker)
    segv = publisher.put("q", {"do": "segv"}, max_attempts=1)
    assert segv is not None
    assert crashing.wait(20) == -signal.SIGSEGV
    good = [i for i in publisher.put_many("q", [{"do": "ack"}] * 20) if i is not None]
    restarted = chaos.start_worker(lease=1, concurrency=2, poll=0.2)  # the supervisor's job
    chaos.wait_finished(20, workers=[restarted])

    tally = chaos.account([segv, *good], died=[crashing.pid])
    assert tally.states == {"done": 20, "failed": 1}
    assert chaos.rows()[segv].last_error == "worker lost: lease expired during attempt 1 of 1"
