"""Batched delete and prune (``limit=``) under concurrent changes."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from psycopg import sql

from taskmaster_core import JobState, Settlement
from taskmaster_core._cli import main
from taskmaster_core.testing import Harness

from .helpers import job, wait_until

pytestmark = pytest.mark.postgres


@contextmanager
def changed_meanwhile(
    pg_dsn: str, pg_conn: psycopg.Connection[Any], broker: Any, job_id: int, state: str
) -> Iterator[Callable[[], None]]:
    """Another session moves ``job_id`` to ``state`` without committing, so a
    batch that picked it waits for its row. Yields ``commit``: call it once
    the broker is waiting (it waits for that itself)."""
    other = psycopg.connect(pg_dsn)
    try:
        other.execute(
            sql.SQL("UPDATE {} SET state = %s, attempts = 0 WHERE id = %s").format(
                broker.names.qualified
            ),
            [state, job_id],
        )
        waiting = (
            "SELECT 1 FROM pg_stat_activity"
            " WHERE application_name LIKE %s AND wait_event_type = 'Lock'"
        )

        def commit() -> None:
            mine = [f"taskmaster/{os.getpid()}/%"]  # this process's brokers
            wait_until(lambda: pg_conn.execute(waiting, mine).fetchone() is not None)
            other.commit()

        yield commit
    finally:
        other.close()  # rolls back if the test failed before committing


def in_thread(target: Callable[[], object]) -> tuple[threading.Thread, list[object]]:
    result: list[object] = []
    thread = threading.Thread(target=lambda: result.append(target()), daemon=True)
    thread.start()
    return thread, result


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

    # Requeued by another session, not committed yet: the batch's subquery
    # still sees the job failed, and its DELETE waits for the row.
    with changed_meanwhile(pg_dsn, pg_conn, broker, job_id, "queued") as commit:
        if operation == "prune":
            deleter, result = in_thread(
                lambda: broker.prune(30, states=[JobState.FAILED], limit=10)
            )
        else:
            deleter, result = in_thread(lambda: broker.delete(states=[JobState.FAILED], limit=10))
        commit()
        deleter.join(10)
    assert not deleter.is_alive()
    assert result == [0]  # re-checked after the wait: no longer failed, not deleted
    (kept,) = broker.jobs(ids=[job_id])
    assert kept.state is JobState.QUEUED


def test_a_short_batch_does_not_end_a_delete_early(
    pg_dsn: str, pg_conn: psycopg.Connection[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    # The command line's table (public.taskmaster_jobs), as in tests/ops.
    from taskmaster_postgres import PostgresBroker

    with PostgresBroker(pg_dsn) as broker:
        broker.drop_jobs_table()
        broker.migrate()
        ids = sorted(i for i in broker.put([job() for _ in range(25)]) if i is not None)
        # A worker acks one of the jobs the first batch picks while the batch
        # runs: that batch deletes 4 of 5, though 20 more are waiting.
        with changed_meanwhile(pg_dsn, pg_conn, broker, ids[0], "done") as commit:
            args = ["--url", pg_dsn, "delete", "--queue", "q", "--state", "queued"]
            cli, code = in_thread(lambda: main([*args, "--batch-size", "5"]))
            commit()
            cli.join(20)
        assert not cli.is_alive()
        assert code == [0]
        assert capsys.readouterr().out.strip() == "deleted 24 job(s)"
        assert [j.state for j in broker.jobs()] == [JobState.DONE]  # only the acked one is left
        broker.drop_jobs_table()
