"""Regression tests for bugs found while testing operations (all fixed):
expired leases of every queue come back when consumers share a broker; a
database error is one line on the CLI; a worker APP that gives no consumers
is a one-line usage error."""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest

from taskmaster_core import NewJob
from taskmaster_postgres import PostgresBroker
from tests.pg_fixtures import unique_schema

from .helpers import taskmaster

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_broker(pg_dsn: str) -> Iterator[PostgresBroker]:
    with PostgresBroker(pg_dsn, schema=unique_schema()) as broker:
        broker.migrate()
        yield broker
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{broker.names.schema}" CASCADE')


def test_expired_leases_of_every_queue_come_back_when_consumers_share_a_broker(
    pg_broker: PostgresBroker, pg_dsn: str
) -> None:
    pg_broker.put([NewJob(queue="b", payload=b"1", serializer="json")])
    (lost,) = pg_broker.claim(["b"], limit=1, lease=30)  # its worker dies
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(
            f'UPDATE "{pg_broker.names.schema}".taskmaster_jobs'
            " SET lease_until = now() - interval '1 second'"
        )
    # Two consumers polling, "a" always a moment before "b", for well over
    # lease + reclaim_interval (the documented bound is already passed).
    claimed = []
    deadline = time.monotonic() + 3 * pg_broker.reclaim_interval
    while time.monotonic() < deadline and not claimed:
        pg_broker.claim(["a"], limit=1, lease=30)
        claimed = pg_broker.claim(["b"], limit=1, lease=30)
        time.sleep(0.1)
    assert [job.id for job in claimed] == [lost.id]


def test_a_command_on_an_unmigrated_database_prints_one_line(cli_dsn: str) -> None:
    result = taskmaster(cli_dsn, "stats")  # cli_dsn: the table does not exist
    assert result.returncode == 1
    assert 'relation "public.taskmaster_jobs" does not exist' in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_a_worker_app_that_gives_no_consumers_is_a_one_line_usage_error(cli_dsn: str) -> None:
    result = taskmaster(cli_dsn, "worker", "examples.component_app.app:Mailer")
    assert result.returncode == 2, result.stderr
    assert "did not give Consumer objects" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
