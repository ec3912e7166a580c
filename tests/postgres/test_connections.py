"""Connections: a bounded pool plus one listener; nothing left after close()."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from taskmaster_core import (
    ACK,
    BrokerClosedError,
    BrokerError,
    ConfigurationError,
    Consumer,
    Job,
    Publisher,
)
from taskmaster_core.testing import Harness
from taskmaster_postgres import PostgresBroker
from tests.pg_fixtures import unique_schema

from .helpers import backends, job, wait_until

pytestmark = pytest.mark.postgres


def test_a_busy_consumer_stays_within_the_pool(
    make_pg_harness: Callable[..., Harness], pg_conn: psycopg.Connection[Any]
) -> None:
    broker: Any = make_pg_harness(pool_max_size=3).broker
    done = threading.Semaphore(0)
    peak = 0
    stop = threading.Event()

    def watch() -> None:
        nonlocal peak
        with psycopg.connect(pg_conn.info.dsn, autocommit=True) as conn:
            while not stop.is_set():
                peak = max(peak, len(backends(conn, broker)))
                time.sleep(0.005)

    def handler(job: Job) -> Any:
        time.sleep(0.002)
        done.release()
        return ACK

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with Consumer(broker, "q", handler, concurrency=32, poll_interval=0.2):
            Publisher(broker).put_many("q", list(range(500)))
            for _ in range(500):
                assert done.acquire(timeout=30)
            wait_until(lambda: broker.stats(["q"])[0].unfinished == 0)
    finally:
        stop.set()
        watcher.join()
    assert 1 < peak <= 3 + 1  # pool_max_size + the listener


def test_close_leaves_no_connection_behind(pg_dsn: str, pg_conn: psycopg.Connection[Any]) -> None:
    broker = PostgresBroker(pg_dsn, schema=unique_schema(), pool_min_size=2, pool_max_size=4)
    broker.open()
    broker.migrate()
    broker.subscribe(["q"], lambda queue: None)
    wait_until(lambda: len(backends(pg_conn, broker)) == 3)  # 2 pooled + listener
    broker.close()
    wait_until(lambda: backends(pg_conn, broker) == [])
    broker.close()  # idempotent
    with pytest.raises(BrokerClosedError):
        broker.put([job()])
    broker.open()  # and it can be opened again
    try:
        assert broker.put([job()]) != [None]
    finally:
        broker.drop_jobs_table()
        broker.close()
    wait_until(lambda: backends(pg_conn, broker) == [])
    pg_conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(broker.names.schema)))


def test_the_listener_opens_only_when_someone_subscribes(
    make_pg_harness: Callable[..., Harness], pg_conn: psycopg.Connection[Any]
) -> None:
    broker: Any = make_pg_harness(pool_min_size=1).broker
    assert not any(q.startswith("LISTEN") for _, q in backends(pg_conn, broker))
    broker.subscribe(["a"], lambda queue: None)
    broker.subscribe(["b"], lambda queue: None)
    listening = [pid for pid, q in backends(pg_conn, broker) if q.startswith("LISTEN")]
    assert len(listening) == 1  # one shared listener connection


def test_an_unreachable_server_is_a_clear_broker_error(pg_dsn: str) -> None:
    dsn = make_conninfo(pg_dsn, host="127.0.0.1", port="1", password="s3cret-pw")  # noqa: S106 - a fake password, checked to be redacted
    broker = PostgresBroker(dsn, connect_timeout=1)
    with pytest.raises(BrokerError) as caught:
        broker.open()
    message = str(caught.value)
    assert "127.0.0.1:1" in message
    assert "s3cret-pw" not in message and "s3cret-pw" not in repr(broker)
    with pytest.raises(BrokerClosedError):
        broker.claim(["q"], 1, 30)
    broker.close()


@pytest.mark.parametrize("where", ["dsn", "environment"])
def test_the_dsns_connect_timeout_bounds_the_retries(
    pg_dsn: str, where: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    dsn = make_conninfo(pg_dsn, host="127.0.0.1", port="1")
    if where == "dsn":
        dsn = make_conninfo(dsn, connect_timeout="2")
    else:
        monkeypatch.setenv("PGCONNECT_TIMEOUT", "2")
    broker = PostgresBroker(dsn)  # no connect_timeout argument: libpq's 2 s, not 10
    started = time.monotonic()
    with pytest.raises(BrokerError) as caught:
        broker.open()
    assert 1.5 < time.monotonic() - started < 8
    message = str(caught.value)
    assert "Connection refused; " in message and "\n" not in message, message


@pytest.mark.parametrize("value", ["0", "-3", "soon", "inf"])
def test_a_connect_timeout_that_would_wait_forever_is_refused(pg_dsn: str, value: str) -> None:
    with pytest.raises(ConfigurationError, match="must be a positive number of seconds"):
        PostgresBroker(make_conninfo(pg_dsn, connect_timeout=value))


def test_pgappname_names_the_broker_unless_the_dsn_does(
    pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PGAPPNAME", "from-environment")
    assert PostgresBroker(pg_dsn).application_name == "from-environment"
    named = make_conninfo(pg_dsn, application_name="from-dsn")
    assert PostgresBroker(named).application_name == "from-dsn"
    assert PostgresBroker(named, application_name="given").application_name == "given"


def test_the_dsns_application_name_names_every_connection(
    pg_dsn: str, pg_conn: psycopg.Connection[Any]
) -> None:
    with PostgresBroker(make_conninfo(pg_dsn, application_name="billing-worker")) as broker:
        assert broker.application_name == "billing-worker"
        broker.subscribe(["q"], lambda queue: None)
        # the pool's connections and the listener's, all under the DSN's name
        wait_until(lambda: any(q.startswith("LISTEN") for _, q in backends(pg_conn, broker)), 5)
        assert len(backends(pg_conn, broker)) >= 2


def test_a_missing_database_is_reported_with_the_servers_reason(pg_dsn: str) -> None:
    broker = PostgresBroker(make_conninfo(pg_dsn, dbname="no_such_db_here"), connect_timeout=10)
    started = time.monotonic()
    with pytest.raises(BrokerError) as caught:
        broker.open()
    assert time.monotonic() - started < 3  # refused for good: no waiting for connect_timeout
    message = str(caught.value)
    assert message.startswith("could not connect to PostgreSQL at ")
    assert 'database "no_such_db_here" does not exist' in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "dsn", ["host=db password=pw dbname='unterminated", "postgresql://db/x?no_such_option=1"]
)
def test_an_unparsable_dsn_is_a_one_line_configuration_error(dsn: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        PostgresBroker(dsn)
    message = str(caught.value)
    assert message.startswith("invalid PostgreSQL DSN: ") and "\n" not in message, message


def test_driver_errors_are_translated(make_pg_harness: Callable[..., Harness]) -> None:
    broker: Any = make_pg_harness(statement_timeout=0.05).broker
    broker.drop_jobs_table()
    with pytest.raises(BrokerError) as caught:
        broker.claim(["q"], 1, 30)
    assert isinstance(caught.value.__cause__, psycopg.errors.UndefinedTable)
    assert "claim failed" in str(caught.value)


def test_statement_timeout_applies(make_pg_harness: Callable[..., Harness], pg_dsn: str) -> None:
    broker: Any = make_pg_harness(statement_timeout=0.2).broker
    with psycopg.connect(pg_dsn) as locker:
        locker.execute(
            sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(broker.names.qualified)
        )
        started = time.monotonic()
        with pytest.raises(BrokerError) as caught:
            broker.claim(["q"], 1, 30)
        assert time.monotonic() - started < 5
    assert isinstance(caught.value.__cause__, psycopg.errors.QueryCanceled)


def test_a_broker_being_closed_is_closed_to_every_caller(pg_dsn: str) -> None:
    """While close() is still shutting the listener down, the broker already
    refuses work (subscribe handed out a silent subscription that never woke)."""
    broker = PostgresBroker(pg_dsn)
    broker.open()
    listener = broker._listener
    assert listener is not None
    closing, release = threading.Event(), threading.Event()
    real_close = listener.close

    def slow_close() -> None:
        closing.set()
        release.wait(10)
        real_close()

    listener.close = slow_close  # type: ignore[method-assign]
    closer = threading.Thread(target=broker.close)
    closer.start()
    try:
        assert closing.wait(10)
        with pytest.raises(BrokerClosedError):
            broker.subscribe(["q"], lambda queue: None)
        with pytest.raises(BrokerClosedError):
            broker.stats()
    finally:
        release.set()
        closer.join(10)
