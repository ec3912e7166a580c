"""Scenarios 3 and 4: connections killed under the workers' feet, and
statements that hang behind a lock held by another session."""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
import pytest
from psycopg import sql

from taskmaster_core import BrokerError, Publisher
from taskmaster_postgres import PostgresBroker

from .helpers import ChaosDB, Worker, chaos_seed, wait_for

pytestmark = [pytest.mark.chaos, pytest.mark.postgres]


def _backends(chaos: ChaosDB, worker: Worker) -> list[tuple[int, str]]:
    rows = chaos.execute(
        "SELECT pid, query FROM pg_stat_activity WHERE application_name LIKE %s",
        [f"taskmaster/{worker.pid}/%"],
    )
    return [(int(r[0]), str(r[1])) for r in rows]


def _listener_pids(chaos: ChaosDB, worker: Worker) -> set[int]:
    return {pid for pid, query in _backends(chaos, worker) if query.startswith("LISTEN")}


def test_work_goes_on_when_every_worker_connection_is_killed(chaos: ChaosDB) -> None:
    seed = chaos_seed()
    poll = 0.5
    settings = {"lease": 3, "concurrency": 4, "poll": poll, "seed": seed}
    workers = [chaos.start_worker(**settings) for _ in range(2)]
    chaos.wait_ready(*workers)
    ids = Publisher(chaos.broker).put_many(
        "q", [{"do": "ack", "max_sleep": 0.03} for _ in range(600)]
    )
    put = [i for i in ids if i is not None]
    for _ in range(3):
        wait_for(lambda: len(chaos.runs()) > 0, 10, "work under way")
        before = {w.pid: _listener_pids(chaos, w) for w in workers}
        victims = [pid for w in workers for pid, _ in _backends(chaos, w)]
        assert len(victims) >= 4  # listeners and pooled connections of both
        for pid in victims:
            chaos.execute("SELECT pg_terminate_backend(%s)", [pid])
        for w in workers:  # each listener comes back on a new connection
            wait_for(
                lambda w=w, old=before[w.pid]: bool(_listener_pids(chaos, w) - old),
                10,
                f"{w} listening again",
            )
    chaos.wait_finished(60, workers=workers)

    # A job whose NOTIFY never comes (inserted with triggers off) still runs,
    # within a poll interval.
    with psycopg.connect(chaos.dsn, autocommit=True) as quiet:
        quiet.execute("SET session_replication_role = replica")  # no trigger, no NOTIFY
        started = time.monotonic()
        unnotified = Publisher(chaos.broker).put("q", {"do": "ack"}, connection=quiet)
    assert unnotified is not None
    chaos.wait_finished(10, workers=workers)
    latency = time.monotonic() - started
    assert latency < poll + 1.0, latency

    tally = chaos.account([*put, unnotified])
    assert tally.states == {"done": 601}
    assert tally.runs == 601  # no job ran twice: nobody died, only connections


def test_statements_stuck_behind_a_lock_time_out_and_work_resumes(chaos: ChaosDB) -> None:
    worker = chaos.start_worker(
        lease=10, concurrency=2, prefetch=0, poll=0.2, statement_timeout=0.5
    )
    chaos.wait_ready(worker)
    publisher = Publisher(chaos.broker)
    put = [
        i for i in publisher.put_many("q", [{"do": "ack", "sleep": 0.01}] * 200) if i is not None
    ]
    wait_for(lambda: len(chaos.runs()) >= 20, 10, "work under way")
    table = chaos.broker.names.qualified
    with (
        psycopg.connect(chaos.dsn) as locker,
        PostgresBroker(chaos.dsn, schema=chaos.schema, statement_timeout=0.5) as timed,
        PostgresBroker(
            chaos.dsn, schema=chaos.schema, pool_max_size=1, connect_timeout=1
        ) as starved,
    ):
        locker.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(table))
        stalled_at = len(chaos.runs())

        # A put with statement_timeout fails after it, with a clear error.
        started = time.monotonic()
        with pytest.raises(BrokerError, match="canceling statement due to statement timeout"):
            Publisher(timed).put("q", {"do": "ack"})
        assert time.monotonic() - started < 3

        # Without a timeout, a put waits for the lock; while it holds the pool's
        # only connection, the next put gets a clear error after connect_timeout.
        waiting: list[Any] = []
        blocked = threading.Thread(
            target=lambda: waiting.append(Publisher(starved).put("q", {"do": "ack"}))
        )
        blocked.start()
        wait_for(
            lambda: (
                chaos.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
                    " AND wait_event_type = 'Lock'",
                    [starved.application_name],
                )
                == [(1,)]
            ),
            10,
            "the put waiting for the lock",
        )
        started = time.monotonic()
        with pytest.raises(BrokerError, match=r"couldn't get a connection after 1\.00 sec"):
            Publisher(starved).put("q", {"do": "ack"})
        assert time.monotonic() - started < 3

        # The worker's claims, acks and heartbeats time out; it keeps retrying.
        wait_for(
            lambda: worker.log().count("canceling statement due to statement timeout") >= 2,
            10,
            "the worker's statements timing out",
        )
        assert len(chaos.runs()) <= stalled_at + 2  # at most the 2 jobs it already held
        locker.rollback()  # the lock is gone
        blocked.join(10)
        assert len(waiting) == 1 and waiting[0] is not None
        put.append(waiting[0])
        chaos.wait_finished(30, workers=[worker])

    tally = chaos.account(put)
    assert tally.states == {"done": 201}
    assert tally.runs == 201
