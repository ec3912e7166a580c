"""NOTIFY coalescing, transactional put, and the listener's reconnects."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from taskmaster_core import BrokerError, ConfigurationError, JobState, Lease, Settlement
from taskmaster_core.testing import Harness

from .helpers import Recorder, backends, drain, job, listen, wait_until

pytestmark = pytest.mark.postgres


def test_put_many_notifies_once_per_queue(
    make_pg_harness: Callable[..., Harness], pg_dsn: str
) -> None:
    broker: Any = make_pg_harness().broker
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        listen(conn, broker)
        ids = broker.put([job("a" if i % 2 else "B") for i in range(100)])
        assert len(ids) == 100 and None not in ids
        assert sorted(drain(conn)) == ["B", "a"]


def test_requeue_release_and_due_retries_notify(
    make_pg_harness: Callable[..., Harness], pg_dsn: str
) -> None:
    broker: Any = make_pg_harness().broker
    broker.put([job("q"), job("q"), job("q")])
    first, second, third = broker.claim(["q"], 3, 30)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        listen(conn, broker)

        assert broker.release([Lease(first.id, first.token)]) == 1
        assert drain(conn) == ["q"]
        broker.settle([Settlement(id=second.id, token=second.token, kind="retry", delay=0)])
        assert drain(conn) == ["q"]
        broker.settle([Settlement(id=third.id, token=third.token, kind="fail", error="x")])
        assert drain(conn) == []  # failing wakes nobody
        assert broker.requeue(ids=[third.id]) == 1
        assert drain(conn) == ["q"]


def test_transactional_put_commits_with_the_callers_transaction(
    make_pg_harness: Callable[..., Harness], pg_dsn: str
) -> None:
    broker: Any = make_pg_harness().broker
    recorder = Recorder()
    broker.subscribe(["q"], recorder)
    # Not autocommit, so a transaction is open; any row factory will do.
    with psycopg.connect(pg_dsn, row_factory=dict_row) as conn:
        (job_id,) = broker.put([job("q")], connection=conn)
        assert job_id is not None
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        assert broker.jobs() == []  # invisible to others until the caller commits
        assert recorder.calls == []
        conn.commit()
    recorder.wait_for("q")
    assert [(j.id, j.state) for j in broker.jobs()] == [(job_id, JobState.QUEUED)]


def test_transactional_put_rolls_back_with_the_callers_transaction(
    make_pg_harness: Callable[..., Harness], pg_dsn: str
) -> None:
    broker: Any = make_pg_harness().broker
    with psycopg.connect(pg_dsn, autocommit=True) as listener:
        listen(listener, broker)
        with psycopg.connect(pg_dsn) as conn, conn.transaction(force_rollback=True):
            conn.execute("CREATE TEMPORARY TABLE app_data (x int)")
            assert broker.put([job("q"), job("r")], connection=conn) != [None, None]
        assert broker.jobs() == []
        assert broker.claim(["q", "r"], 10, 30) == []
        assert drain(listener) == []  # a rolled-back put wakes nobody


def test_put_only_accepts_a_psycopg_connection(make_pg_harness: Callable[..., Harness]) -> None:
    broker: Any = make_pg_harness().broker
    with pytest.raises(ConfigurationError, match=r"psycopg\.Connection"):
        broker.put([job()], connection=object())


def test_put_on_a_broken_callers_connection_is_a_broker_error(
    make_pg_harness: Callable[..., Harness], pg_dsn: str
) -> None:
    broker: Any = make_pg_harness().broker
    with psycopg.connect(pg_dsn) as conn:
        with pytest.raises(psycopg.errors.DivisionByZero):
            conn.execute("SELECT 1 / 0")
        with pytest.raises(BrokerError) as caught:
            broker.put([job()], connection=conn)
        assert isinstance(caught.value.__cause__, psycopg.errors.InFailedSqlTransaction)


def test_listener_survives_pg_terminate_backend(
    make_pg_harness: Callable[..., Harness], pg_conn: psycopg.Connection[Any]
) -> None:
    broker: Any = make_pg_harness(max_reconnect_backoff=0.5).broker
    recorder = Recorder()
    broker.subscribe(["q"], recorder)
    listeners = [pid for pid, query in backends(pg_conn, broker) if query.startswith("LISTEN")]
    assert len(listeners) == 1
    pg_conn.execute("SELECT pg_terminate_backend(%s)", [listeners[0]])
    recorder.wait_for(None)  # reconnected: catch-up call for every subscriber
    wait_until(
        lambda: any(
            q.startswith("LISTEN") and pid != listeners[0] for pid, q in backends(pg_conn, broker)
        )
    )
    (job_id,) = broker.put([job("q")])
    recorder.wait_for("q")
    assert [c.id for c in broker.claim(["q"], 1, 30)] == [job_id]


def test_jobs_put_while_the_listener_is_down_are_caught_up(
    make_pg_harness: Callable[..., Harness], pg_conn: psycopg.Connection[Any]
) -> None:
    harness = make_pg_harness(max_reconnect_backoff=0.5)
    broker: Any = harness.broker
    recorder = Recorder()
    broker.subscribe(["q"], recorder)
    (listener_pid,) = [pid for pid, q in backends(pg_conn, broker) if q.startswith("LISTEN")]
    pg_conn.execute("SELECT pg_terminate_backend(%s)", [listener_pid])
    (job_id,) = broker.put([job("q")])  # may or may not be heard
    recorder.wait_for(None)
    # Whatever was missed, the catch-up wake-up makes the consumer claim it.
    assert [c.id for c in broker.claim(["q"], 1, 30)] == [job_id]


def test_polling_only_mode_never_listens(
    make_pg_harness: Callable[..., Harness], pg_conn: psycopg.Connection[Any]
) -> None:
    broker: Any = make_pg_harness(listen=False).broker
    recorder = Recorder()
    subscription = broker.subscribe(["q"], recorder)
    (job_id,) = broker.put([job("q")])
    assert [c.id for c in broker.claim(["q"], 1, 30)] == [job_id]
    assert not any(q.startswith("LISTEN") for _, q in backends(pg_conn, broker))
    assert recorder.calls == []
    subscription.close()


def test_closed_subscriptions_are_not_called(make_pg_harness: Callable[..., Harness]) -> None:
    broker: Any = make_pg_harness().broker
    gone, kept = Recorder(), Recorder()
    broker.subscribe(["q"], gone).close()
    broker.subscribe(["q"], kept)
    broker.put([job("q")])
    kept.wait_for("q")
    assert gone.calls == []


def test_a_failing_callback_does_not_stop_the_listener(
    make_pg_harness: Callable[..., Harness],
) -> None:
    broker: Any = make_pg_harness().broker
    recorder = Recorder()

    def explode(queue: str | None) -> None:
        raise RuntimeError("callback bug")

    broker.subscribe(["q"], explode)
    broker.subscribe(["q"], recorder)
    broker.put([job("q")])
    recorder.wait_for("q")
    broker.put([job("q")])
    wait_until(lambda: recorder.calls.count("q") == 2)


def test_the_listen_connection_closes_with_the_last_subscription(
    make_pg_harness: Callable[..., Harness], pg_dsn: str
) -> None:
    broker: Any = make_pg_harness().broker
    with psycopg.connect(pg_dsn, autocommit=True) as conn:

        def listening() -> bool:
            return any(query.startswith("LISTEN") for _, query in backends(conn, broker))

        first = broker.subscribe(["q"], Recorder())
        second = broker.subscribe(["r"], Recorder())
        wait_until(listening)
        first.close()
        assert listening()  # one subscription is left
        second.close()
        wait_until(lambda: not listening())  # a publisher-only process pays nothing
        heard = Recorder()
        broker.subscribe(["q"], heard)  # and it comes back on demand
        wait_until(listening)
        broker.put([job("q")])
        heard.wait_for("q")
