"""Pausing on Postgres: stored in the database, so it holds for every worker
and survives restarts; a table from before pausing existed is upgraded by
``migrate`` (schema version 2)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from psycopg import sql

from taskmaster_core import JobState, SchemaMissingError
from taskmaster_core.testing import Harness
from taskmaster_core.testing._builders import new_job
from taskmaster_postgres import PostgresBroker

from .test_url import as_url

pytestmark = pytest.mark.postgres


def test_a_pause_holds_for_another_broker_and_after_a_restart(
    make_pg_harness: Callable[..., Harness], pg_dsn: str
) -> None:
    first: Any = make_pg_harness().broker
    schema = first.names.schema
    first.put([new_job("emails")])
    first.pause(["emails"])
    first.close()
    with PostgresBroker(pg_dsn, schema=schema) as other:  # another process, or a restart
        assert other.paused() == ["emails"]
        assert other.claim(["emails"], 10, 30) == []
        other.resume(["emails"])
        (job,) = other.claim(["emails"], 10, 30)
        assert job.queue == "emails"


def test_migrate_upgrades_a_table_from_before_pausing(
    make_pg_harness: Callable[..., Harness], pg_dsn: str, pg_conn: psycopg.Connection[Any]
) -> None:
    broker: Any = make_pg_harness().broker
    n = broker.names
    broker.put([new_job("q")])
    # Back to version 1, as a table created by the previous release.
    pg_conn.execute(sql.SQL("DROP TABLE {}").format(n.ident(n.queues_table)))
    pg_conn.execute(
        sql.SQL("DELETE FROM {} WHERE table_name = %s AND version = 2").format(
            sql.Identifier(n.schema, "taskmaster_schema_versions")
        ),
        [n.table],
    )
    assert broker.schema_version() == 1
    with pytest.raises(SchemaMissingError, match="queues"):
        broker.claim(["q"], 1, 30)
    assert any("queues" in statement for statement in broker.migration_sql())
    broker.migrate()
    assert broker.schema_version() == 2
    (job,) = broker.claim(["q"], 1, 30)  # the job put under version 1 is still there
    assert broker.jobs(ids=[job.id])[0].state is JobState.RUNNING


def test_the_cli_pauses_resumes_and_shows_paused_queues(
    make_pg_harness: Callable[..., Harness], pg_dsn: str
) -> None:
    broker: Any = make_pg_harness().broker
    broker.put([new_job("emails"), new_job("reports")])
    url = as_url(pg_dsn, schema=broker.names.schema)

    def taskmaster(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "taskmaster_core._cli", "--url", url, *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    paused = taskmaster("pause", "emails")
    assert paused.returncode == 0, paused.stderr
    assert "paused: emails" in paused.stdout
    assert broker.paused() == ["emails"]
    stats = taskmaster("stats")
    assert "emails (paused)" in stats.stdout and "reports (paused)" not in stats.stdout
    assert taskmaster("resume", "emails").returncode == 0
    assert broker.paused() == []
    too_long = taskmaster("pause", "x" * 1001)
    assert too_long.returncode == 2 and "queue name of 1001 characters" in too_long.stderr


def test_a_worker_on_a_table_from_before_pausing_stops_at_start_saying_to_migrate(
    make_pg_harness: Callable[..., Harness], pg_dsn: str, pg_conn: psycopg.Connection[Any]
) -> None:
    """A worker of this version on a version-1 table would have its claims
    fail and retry forever: it stops at start, with the way out."""
    broker: Any = make_pg_harness().broker
    n = broker.names
    pg_conn.execute(sql.SQL("DROP TABLE {}").format(n.ident(n.queues_table)))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "taskmaster_core._cli",
            "--url",
            as_url(pg_dsn, schema=n.schema),
            "worker",
            "tests.ops.queues_app:make_consumers",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert "queues" in result.stderr and "taskmaster migrate" in result.stderr
