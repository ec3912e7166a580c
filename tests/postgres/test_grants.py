"""A worker role with only the grants docs/postgres.md lists can do its job."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from taskmaster_core import JobState, Settlement
from taskmaster_core.testing import Harness
from taskmaster_postgres import PostgresBroker

from .helpers import Recorder, job

pytestmark = pytest.mark.postgres


@pytest.fixture
def worker_role(pg_conn: psycopg.Connection[Any]) -> Iterator[str]:
    role = f"tm_worker_{secrets.token_hex(4)}"
    pg_conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    try:
        yield role
    finally:
        pg_conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        pg_conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_a_worker_needs_only_the_documented_grants(
    make_pg_harness: Callable[..., Harness],
    pg_conn: psycopg.Connection[Any],
    pg_dsn: str,
    worker_role: str,
) -> None:
    owner: Any = make_pg_harness(keep_done=True).broker
    n = owner.names
    role = sql.Identifier(worker_role)
    for grant in [
        sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(n.schema), role),
        sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON {} TO {}").format(n.qualified, role),
        sql.SQL("GRANT USAGE ON SEQUENCE {}, {} TO {}").format(
            n.ident(n.id_seq), n.ident(n.token_seq), role
        ),
        sql.SQL("GRANT SELECT ON {} TO {}").format(n.ident(n.queues_table), role),
        sql.SQL("GRANT SELECT ON {} TO {}").format(
            sql.Identifier(n.schema, "taskmaster_schema_versions"), role
        ),
    ]:
        pg_conn.execute(grant)
    dsn = make_conninfo(pg_dsn, user=worker_role)
    with PostgresBroker(dsn, schema=n.schema, keep_done=True) as worker:
        worker.migrate()  # already current: a read, no DDL
        heard = Recorder()
        worker.subscribe(["q"], heard)
        first, second = worker.put([job("q", dedup_key="k"), job("q")])
        assert first is not None and second is not None
        heard.wait_for("q")
        a, b = worker.claim(["q"], 2, 30)
        assert worker.extend([], 30) == []
        assert (
            worker.settle(
                [
                    Settlement(id=a.id, token=a.token, kind="ack"),
                    Settlement(id=b.id, token=b.token, kind="fail", error="boom"),
                ]
            )
            == []
        )
        assert worker.requeue(ids=[b.id]) == 1
        assert [s.queued for s in worker.stats()] == [1]
        assert {j.state for j in worker.jobs()} == {JobState.DONE, JobState.QUEUED}
        assert worker.prune(0, states=[JobState.DONE]) == 1
        assert worker.delete(queue="q") == 1
