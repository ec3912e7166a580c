"""Scenario 8: many processes and threads, random outcomes and delays; then
hypothesis-chosen schedules at small scale.

At the issue's full scale: 4 worker processes x 16 threads, 50,000 jobs
(about 20 s on a 2-core machine; ``CHAOS_STRESS_JOBS`` changes the count)."""

from __future__ import annotations

import os
import tempfile
import time
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from taskmaster_core import Consumer, Message, Publisher, RetryPolicy

from .apps import RunLog, _Handler
from .helpers import ChaosDB, chaos_db, chaos_seed, wait_for

pytestmark = [pytest.mark.chaos, pytest.mark.postgres, pytest.mark.slow]

STRESS_JOBS = int(os.environ.get("CHAOS_STRESS_JOBS", "50000"))


def test_four_processes_random_outcomes_the_accounting_holds(chaos: ChaosDB) -> None:
    seed = chaos_seed()
    settings_ = {"lease": 5, "concurrency": 16, "poll": 0.2, "seed": seed, "pool": 3}
    workers = [chaos.start_worker(**settings_) for _ in range(4)]
    chaos.wait_ready(*workers)
    started = time.monotonic()
    ids = Publisher(chaos.broker, max_attempts=3).put_many(
        "q", [{"do": "random", "max_sleep": 0.002} for _ in range(STRESS_JOBS)]
    )
    put = [i for i in ids if i is not None]
    assert len(put) == STRESS_JOBS
    chaos.wait_finished(150, workers=workers)
    elapsed = time.monotonic() - started

    tally = chaos.account(put)
    assert set(tally.states) <= {"done", "failed"}
    assert tally.states["done"] + tally.states["failed"] == STRESS_JOBS
    per_process = Counter(r.pid for r in chaos.runs())
    assert set(per_process) == {w.pid for w in workers}, per_process
    print(f"{STRESS_JOBS} jobs, {tally.runs} runs in {elapsed:.1f}s: {tally.states}")


OUTCOMES = st.sampled_from(["ack", "ack", "reject", "retry", "raise"])


@settings(
    max_examples=int(os.environ.get("CHAOS_SCHEDULES", "25")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
@given(
    scripts=st.lists(st.lists(OUTCOMES, min_size=1, max_size=4), min_size=1, max_size=30),
    attempts=st.integers(1, 4),
    shapes=st.lists(st.tuples(st.integers(1, 4), st.integers(0, 8)), min_size=1, max_size=3),
    stop_after=st.integers(0, 40),
    sleep=st.sampled_from([0.0, 0.002, 0.01]),
)
def test_schedules_chosen_by_hypothesis(
    pg_dsn: str,
    scripts: list[list[str]],
    attempts: int,
    shapes: list[tuple[int, int]],
    stop_after: int,
    sleep: float,
) -> None:
    """Consumers of random shapes (concurrency, prefetch) in this process; the
    first is stopped gracefully after ``stop_after`` runs and a last one
    finishes the work. Jobs follow random per-attempt scripts."""
    with chaos_db(pg_dsn, Path(tempfile.gettempdir())) as chaos:
        runs = RunLog(chaos.dsn, chaos.schema, size=2)
        runs.open()
        handler = _Handler(runs, seed=0)
        retry = RetryPolicy(base_delay=0.01, factor=2.0, max_delay=0.05, jitter=0.5)

        def consumer(concurrency: int, prefetch: int) -> Consumer:
            return Consumer(
                chaos.broker,
                "q",
                handler,
                concurrency=concurrency,
                prefetch=prefetch,
                lease=5,
                poll_interval=0.05,
                retry=retry,
                plugins=False,
            )

        consumers = [consumer(*shape) for shape in shapes]
        for c in consumers:
            c.start()
        try:
            ids = Publisher(chaos.broker, max_attempts=attempts).publish(
                [Message(queue="q", payload={"script": s, "sleep": sleep}) for s in scripts]
            )
            wait_for(
                lambda: len(chaos.runs()) >= stop_after or chaos.unfinished() == 0,
                20,
                "runs",
            )
            assert consumers[0].stop(10)
            last = consumer(2, 2)
            last.start()
            consumers.append(last)
            chaos.wait_finished(30)
        finally:
            for c in consumers:
                c.stop(10)
            runs.close()
        tally = chaos.account([i for i in ids if i is not None])
        assert sum(tally.states.values()) == len(scripts)
