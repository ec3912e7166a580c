"""Scenario 2: the database restarts in the middle of a run (on a server of
the test's own, never the shared one)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from taskmaster_core import Publisher, TaskmasterError
from tests.pg_servers import own_server, restart

from .helpers import ChaosDB, chaos_db, chaos_seed, wait_for

pytestmark = [pytest.mark.chaos, pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture
def restartable(tmp_path: Path) -> Iterator[tuple[Any, ChaosDB]]:
    with own_server() as server, chaos_db(str(server.get_uri()), tmp_path) as db:
        yield server, db


def test_workers_and_publishers_ride_out_a_database_restart(
    restartable: tuple[Any, ChaosDB],
) -> None:
    server, chaos = restartable
    seed = chaos_seed()
    # The lease outlasts the restart, so no job is taken over because of it.
    settings = {"lease": 10, "concurrency": 4, "poll": 0.3, "seed": seed}
    workers = [chaos.start_worker(**settings) for _ in range(2)]
    chaos.wait_ready(*workers)
    publisher = Publisher(chaos.broker)
    accepted = [i for i in publisher.put_many("q", [{"do": "ack", "max_sleep": 0.02}] * 300) if i]
    failures: list[BaseException] = []
    stop = threading.Event()

    def keep_putting() -> None:
        while not stop.is_set():
            try:
                job_id = publisher.put("q", {"do": "ack"})
            except TaskmasterError as exc:  # never anything else, never silence
                failures.append(exc)
                time.sleep(0.05)
            else:
                assert job_id is not None
                accepted.append(job_id)
                time.sleep(0.005)

    putter = threading.Thread(target=keep_putting)
    putter.start()
    try:
        wait_for(lambda: len(chaos.runs()) >= 50, 20, "work under way")
        restart(server)
        before = len(accepted)
        wait_for(lambda: len(accepted) >= before + 50, 30, "puts accepted after the restart")
    finally:
        stop.set()
        putter.join(10)
    chaos.wait_finished(60, workers=workers)

    assert failures, "no put ran into the restart"
    for exc in failures:
        assert "failed on" in str(exc) and exc.__cause__ is not None, repr(exc)
    # A put that failed may still have committed (the reply was lost): such a
    # job exists although its caller got an error; never the other way round.
    extra = set(chaos.rows()) - set(accepted)
    assert len(extra) <= len(failures)
    tally = chaos.account([*accepted, *extra])
    assert tally.states == {"done": len(accepted) + len(extra)}
    assert tally.runs == len(accepted) + len(extra)
    for worker in workers:
        assert "listener connection" in worker.log() and "reconnecting" in worker.log()
