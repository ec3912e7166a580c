"""The three put routes (one row, arrays, binary COPY) agree on ids and transactions."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from taskmaster_core import BrokerError
from taskmaster_core.testing import Harness
from taskmaster_postgres._put import COPY_THRESHOLD

from .helpers import job

pytestmark = pytest.mark.postgres


@pytest.mark.parametrize("size", [1, 10, COPY_THRESHOLD, 3000])
def test_ids_come_back_in_input_order_while_others_put(
    make_pg_harness: Callable[..., Harness], size: int
) -> None:
    broker: Any = make_pg_harness().broker
    stop = threading.Event()

    def noise() -> None:
        while not stop.is_set():
            broker.put([job("noise")])

    thread = threading.Thread(target=noise)
    thread.start()
    try:
        jobs = [
            job("q", b'{"n": %d}' % i, priority=i % 3, headers={"i": str(i)}) for i in range(size)
        ]
        ids = broker.put(jobs)
    finally:
        stop.set()
        thread.join()
    assert len(ids) == size and None not in ids
    stored = {j.id: j for j in broker.jobs(ids=ids, limit=size)}
    for i, (new, job_id) in enumerate(zip(jobs, ids, strict=True)):
        assert stored[job_id].payload == new.payload
        assert stored[job_id].priority == i % 3
        assert stored[job_id].headers == {"i": str(i)}


def test_a_large_batch_with_dedup_keys_aligns_skips(
    make_pg_harness: Callable[..., Harness],
) -> None:
    broker: Any = make_pg_harness().broker
    (held,) = broker.put([job("q", dedup_key="k5")])
    jobs = [job("q", b"%d" % i, dedup_key=f"k{i % 100}") for i in range(200)]
    ids = broker.put(jobs)
    assert ids[5] is None  # held by the earlier job
    assert all(ids[i] is not None for i in range(100) if i != 5)
    assert all(ids[i] is None for i in range(100, 200))  # duplicates within the batch
    stored = {j.id: j.payload for j in broker.jobs(queue="q", limit=1000)}
    assert stored[held] == b"{}"
    assert all(stored[ids[i]] == b"%d" % i for i in range(100) if i != 5)


@pytest.mark.parametrize("autocommit", [False, True])
def test_a_copy_put_joins_the_callers_transaction(
    make_pg_harness: Callable[..., Harness], pg_dsn: str, autocommit: bool
) -> None:
    broker: Any = make_pg_harness().broker
    batch = [job("q") for _ in range(COPY_THRESHOLD * 2)]
    with psycopg.connect(pg_dsn, autocommit=autocommit) as conn:
        with conn.transaction(force_rollback=True):
            assert None not in broker.put(batch, connection=conn)
        assert broker.jobs() == []
        with conn.transaction():
            ids = broker.put(batch, connection=conn)
            assert broker.jobs() == []  # not committed yet
        assert len(broker.jobs(limit=1000)) == len(batch)
        assert sorted(j.id for j in broker.jobs(limit=1000)) == sorted(ids)
        if not autocommit:
            conn.commit()


def test_a_put_after_its_connection_was_killed_fails_once_then_reconnects(
    make_pg_harness: Callable[..., Harness], pg_dsn: str
) -> None:
    broker: Any = make_pg_harness().broker
    assert broker.put([job("q")])[0] is not None
    kept = broker._connections._put_conn
    assert kept is not None  # puts keep one warm connection
    with psycopg.connect(pg_dsn, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [kept.info.backend_pid])
    with pytest.raises(BrokerError, match="put failed"):
        broker.put([job("q")])  # a put never silently disappears
    assert broker.put([job("q")])[0] is not None
    assert broker._connections._put_conn is not kept
    assert len(broker.jobs(queue="q")) == 2
