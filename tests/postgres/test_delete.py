"""Batched delete and prune (``limit=``) under concurrent changes."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from psycopg import sql

from taskmaster_core import JobState, Settlement
from tests.harness import Harness

from .helpers import job, wait_until

pytestmark = pytest.mark.postgres


@pytest.mark.parametrize("operation", ["prune", "delete"])
def test_a_job_requeued_while_a_batch_deletes_it_is_kept(
    make_pg_harness: Callable[..., Harness],
    pg_dsn: str,
    pg_conn: psycopg.Connection[Any],
    operation: str,
) -> None:
    harness = make_pg_harness()
    broker: Any = harness.broker
    (job_id,) = broker.put([job()])
    (claimed,) = broker.claim(["q"], 1, 30)
    broker.settle([Settlement(id=claimed.id, token=claimed.token, kind="fail", error="boom")])
    harness.advance(60)  # an old failed job: what prune and delete --state failed take

    # Another session requeues it and has not committed yet: the batch's
    # subquery still sees the job failed, and its DELETE waits for the row.
    requeuer = psycopg.connect(pg_dsn)
    requeuer.execute(
        sql.SQL("UPDATE {} SET state = 'queued', attempts = 0 WHERE id = %s").format(
            broker.names.qualified
        ),
        [job_id],
    )
    result: list[int] = []

    def batch() -> None:
        if operation == "prune":
            result.append(broker.prune(30, states=[JobState.FAILED], limit=10))
        else:
            result.append(broker.delete(states=[JobState.FAILED], limit=10))

    deleter = threading.Thread(target=batch)
    deleter.start()
    waiting = (
        "SELECT 1 FROM pg_stat_activity WHERE application_name = %s AND wait_event_type = 'Lock'"
    )
    wait_until(lambda: pg_conn.execute(waiting, [broker.application_name]).fetchone() is not None)
    requeuer.commit()
    requeuer.close()
    deleter.join(10)

    assert result == [0]  # re-checked after the wait: no longer failed, not deleted
    (kept,) = broker.jobs(ids=[job_id])
    assert kept.state is JobState.QUEUED
