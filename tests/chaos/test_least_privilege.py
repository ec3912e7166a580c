"""Workers and publishers run with exactly the grants docs/postgres.md lists
(a full run: worker processes, retries, a worker killed and its jobs
reclaimed, requeue and prune)."""

from __future__ import annotations

import secrets
import signal
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from taskmaster_core import JobState, Publisher
from taskmaster_postgres import PostgresBroker

from .apps import RUNS_TABLE
from .helpers import ChaosDB, chaos_seed, wait_for

pytestmark = [pytest.mark.chaos, pytest.mark.postgres]


@pytest.fixture
def worker_role(chaos: ChaosDB) -> Iterator[str]:
    role = f"tm_chaos_worker_{secrets.token_hex(4)}"
    r = sql.Identifier(role)
    n = chaos.broker.names
    chaos.execute(sql.SQL("CREATE ROLE {} LOGIN").format(r))
    for grant in [  # exactly the list in docs/postgres.md, "Grants"
        sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(n.schema), r),
        sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON {} TO {}").format(n.qualified, r),
        sql.SQL("GRANT USAGE ON SEQUENCE {}, {} TO {}").format(
            n.ident(n.id_seq), n.ident(n.token_seq), r
        ),
        sql.SQL("GRANT SELECT ON {} TO {}").format(n.ident(n.queues_table), r),
        # The test application's own bookkeeping table, not Taskmaster's.
        sql.SQL("GRANT INSERT ON {} TO {}").format(sql.Identifier(n.schema, RUNS_TABLE), r),
    ]:
        chaos.execute(grant)
    try:
        yield role
    finally:
        chaos.kill_all()
        chaos.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", [role]
        )
        chaos.execute(sql.SQL("DROP OWNED BY {}").format(r))
        chaos.execute(sql.SQL("DROP ROLE {}").format(r))


def test_a_full_worker_run_needs_only_the_documented_grants(
    chaos: ChaosDB, worker_role: str
) -> None:
    seed = chaos_seed()
    n = chaos.broker.names
    privileges = chaos.execute(
        "SELECT has_schema_privilege(%(r)s, %(s)s, 'CREATE'),"
        " has_table_privilege(%(r)s, %(t)s, 'TRUNCATE'),"
        " has_table_privilege(%(r)s, %(t)s, 'TRIGGER'),"
        " has_table_privilege(%(r)s, %(t)s, 'REFERENCES'),"
        " has_table_privilege(%(r)s, %(t)s, 'SELECT, INSERT, UPDATE, DELETE')",
        {"r": worker_role, "s": n.schema, "t": n.qualified.as_string(None)},
    )
    assert privileges == [(False, False, False, False, True)]

    dsn = make_conninfo(chaos.dsn, user=worker_role)
    settings = {"dsn": dsn, "lease": 1, "concurrency": 4, "poll": 0.2, "seed": seed}
    workers = [chaos.start_worker(**settings) for _ in range(2)]
    chaos.wait_ready(*workers)
    with PostgresBroker(dsn, schema=n.schema, keep_done=True) as as_worker:
        publisher = Publisher(as_worker, max_attempts=3)
        ids = publisher.put_many("q", [{"do": "random", "max_sleep": 0.02}] * 300)
        ids += [publisher.put("q", {"do": "ack"}, dedup_key="once")]
        victim = workers[0]
        wait_for(lambda: any(r.pid == victim.pid for r in chaos.runs()), 10, "runs")
        victim.signal(signal.SIGKILL)
        victim.wait(10)
        chaos.wait_finished(60, workers=workers[1:])
        put = [i for i in ids if i is not None]
        tally = chaos.account(put, died=[victim.pid])
        assert tally.states["done"] + tally.states["failed"] == 301

        # Operations as the same role: requeue the failed, prune the done.
        failed = tally.states["failed"]
        assert as_worker.requeue(queue="q") == failed
        chaos.wait_finished(60, workers=workers[1:])
        assert as_worker.prune(0, states=[JobState.DONE]) > 0
        assert as_worker.stats(["q"])[0].unfinished == 0

        # And nothing more than that.
        with psycopg.connect(dsn, autocommit=True) as conn:
            for statement in [
                sql.SQL("TRUNCATE {}").format(n.qualified),
                sql.SQL("DROP TABLE {}").format(n.qualified),
                sql.SQL("CREATE TABLE {} (x int)").format(sql.Identifier(n.schema, "nope")),
            ]:
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute(statement)
