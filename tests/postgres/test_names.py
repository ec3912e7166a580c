"""Names: arbitrary queue names; quoted schema and table names; migrations."""

from __future__ import annotations

import contextlib
import random
import threading
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from psycopg import sql

from taskmaster_core import MAX_QUEUE_NAME_LENGTH, ConfigurationError, JobState
from taskmaster_core.testing import Harness
from taskmaster_postgres import SCHEMA_VERSION, PostgresBroker
from tests.pg_fixtures import unique_schema

from .helpers import Recorder, job

pytestmark = pytest.mark.postgres

QUEUE_NAMES = [
    "MixedCase",
    "with spaces",
    'it\'s "quoted"',
    "'; DROP TABLE x; --",
    "$$ dollar $tag$",
    "ünïcødé ☃ 队列",
    "q" * 200,
    "%s %(name)s {}",
    "back\\slash",
]


@pytest.mark.parametrize("queue", QUEUE_NAMES)
def test_any_queue_name_is_put_notified_and_claimed(
    make_pg_harness: Callable[..., Harness], queue: str
) -> None:
    broker: Any = make_pg_harness().broker
    other = Recorder()
    mine = Recorder()
    broker.subscribe([queue.upper() if queue != queue.upper() else "other"], other)
    broker.subscribe([queue], mine)
    (job_id,) = broker.put([job(queue)])
    mine.wait_for(queue)
    claimed = broker.claim([queue], 10, 30)
    assert [(c.id, c.queue) for c in claimed] == [(job_id, queue)]
    assert [s.queue for s in broker.stats()] == [queue]
    assert other.calls == []


def test_queue_names_that_notify_cannot_carry_are_refused(
    make_pg_harness: Callable[..., Harness],
) -> None:
    broker: Any = make_pg_harness().broker
    longest = "é" * MAX_QUEUE_NAME_LENGTH
    assert broker.put([job(longest)]) != [None]
    with pytest.raises(ConfigurationError, match="over the limit"):
        broker.put([job(longest + "x")])
    with pytest.raises(ConfigurationError, match="NUL"):
        broker.put([job("a\x00b")])
    with pytest.raises(ConfigurationError, match="NUL"):
        broker.put([job("q", dedup_key="a\x00b")])
    assert [j.queue for j in broker.jobs()] == [longest]


def test_names_too_long_for_an_index_are_refused_clearly(
    make_pg_harness: Callable[..., Harness],
) -> None:
    broker: Any = make_pg_harness().broker
    rng = random.Random(4)
    # Incompressible: a B-tree entry holds at most 2704 bytes, even compressed.
    widest = "".join(chr(rng.randrange(0x10000, 0x10FFFF)) for _ in range(500))  # 2000 bytes
    key = "".join(chr(rng.randrange(33, 127)) for _ in range(512))
    assert None not in broker.put([job(widest, dedup_key=key)])
    with pytest.raises(ConfigurationError, match="2004 bytes in UTF-8, over the limit of 2000"):
        broker.put([job(widest + "\U0001f600")])
    with pytest.raises(ConfigurationError, match="513 bytes in UTF-8, over the limit of 512"):
        broker.put([job("q", dedup_key=key + "x")])
    assert [j.queue for j in broker.jobs()] == [widest]


@pytest.mark.parametrize(
    ("schema", "table"),
    [
        ('Sch"ema with spaces', "Jobs 'Table'"),
        ("ünï", "t" * 63),
        ("UPPER", "x" * 60 + "ü"),
        ("100% %s %(q)s", "50%% {t} %b"),  # psycopg reads % in parameterized queries
    ],
)
def test_quoted_and_long_schema_and_table_names_work(
    make_pg_harness: Callable[..., Harness],
    pg_conn: psycopg.Connection[Any],
    schema: str,
    table: str,
) -> None:
    schema = f"{schema[:40]}{unique_schema()}"[:63]
    broker: Any = make_pg_harness(schema=schema, table=table).broker
    recorder = Recorder()
    broker.subscribe(["q"], recorder)
    (job_id,) = broker.put([job("q", dedup_key="k")])
    recorder.wait_for("q")
    assert [c.id for c in broker.claim(["q"], 1, 30)] == [job_id]
    names = broker.names
    derived = [names.claim_idx, names.lease_idx, names.dedup_idx, names.finished_idx]
    for name in [*derived, names.id_seq, names.token_seq, names.notify_fn]:
        assert len(name.encode()) <= 63
    found = pg_conn.execute(
        "SELECT indexname FROM pg_indexes WHERE schemaname = %s AND tablename = %s",
        [schema, table],
    ).fetchall()
    assert set(derived) <= {r[0] for r in found}
    assert len(set(derived)) == len(derived)


def test_names_that_postgres_would_truncate_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="63 bytes"):
        PostgresBroker("postgresql://localhost/db", table="t" * 64)
    with pytest.raises(ConfigurationError, match="63 bytes"):
        PostgresBroker("postgresql://localhost/db", schema="é" * 32)
    with pytest.raises(ConfigurationError, match="non-empty"):
        PostgresBroker("postgresql://localhost/db", schema="")


def test_migrate_is_idempotent_and_versioned(make_pg_harness: Callable[..., Harness]) -> None:
    broker: Any = make_pg_harness().broker
    (job_id,) = broker.put([job()])
    broker.migrate()
    broker.create_jobs_table()
    assert broker.schema_version() == SCHEMA_VERSION
    assert [j.id for j in broker.jobs()] == [job_id]  # migrating again kept the data
    broker.drop_jobs_table()
    assert broker.schema_version() == 0
    broker.drop_jobs_table()  # dropping twice is fine too
    broker.migrate()
    assert broker.schema_version() == SCHEMA_VERSION
    assert broker.jobs() == []


def test_the_dry_run_sql_is_what_migrate_runs(
    pg_dsn: str, pg_conn: psycopg.Connection[Any]
) -> None:
    schema = f"{unique_schema()} dry 'run'"  # does not exist yet; a name that needs quoting
    planned = PostgresBroker(pg_dsn, schema=schema, table='planned "%s"')
    migrated = PostgresBroker(pg_dsn, schema=schema, table='migrated "%s"')
    drop = sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
    with planned, migrated, contextlib.ExitStack() as cleanup:
        cleanup.callback(pg_conn.execute, drop)
        statements = planned.migration_sql()
        assert statements[0] == "BEGIN" and statements[-1] == "COMMIT"
        assert planned.schema_version() == 0  # printing the plan changed nothing
        pg_conn.execute(";\n".join(statements))  # run as a user would run the printed file
        assert planned.schema_version() == SCHEMA_VERSION
        assert planned.migration_sql() == []
        migrated.migrate()

        def catalog(table: str) -> list[tuple[str, ...]]:
            """Columns, indexes and triggers of ``table``, its own name taken out."""
            rows = pg_conn.execute(
                """
                SELECT 'column', attname || ' ' || format_type(atttypid, atttypmod)
                       || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '')
                FROM pg_attribute a
                LEFT JOIN pg_attrdef d ON (d.adrelid, d.adnum) = (a.attrelid, a.attnum)
                WHERE attrelid = %(t)s::regclass AND attnum > 0
                UNION ALL SELECT 'index', pg_get_indexdef(indexrelid) FROM pg_index
                WHERE indrelid = %(t)s::regclass
                UNION ALL SELECT 'check', pg_get_constraintdef(oid) FROM pg_constraint
                WHERE conrelid = %(t)s::regclass
                UNION ALL SELECT 'trigger', pg_get_triggerdef(oid) FROM pg_trigger
                WHERE tgrelid = %(t)s::regclass
                """,
                {"t": sql.Identifier(schema, table).as_string(pg_conn)},
            ).fetchall()
            name = table.replace('"', '""')
            # The trigger's function and channel are derived from the table
            # name too: compare the trigger up to its EXECUTE FUNCTION.
            return sorted(
                (kind, text.replace(name, "T").split(" EXECUTE FUNCTION ")[0])
                for kind, text in rows
            )

        planned_catalog = catalog('planned "%s"')
        assert len(planned_catalog) == 17 + 5 + 2 + 1  # columns, indexes, checks, trigger
        assert planned_catalog == catalog('migrated "%s"')


def test_concurrent_migrations_are_safe(pg_dsn: str, pg_conn: psycopg.Connection[Any]) -> None:
    schema = unique_schema()  # does not exist yet: both threads race to create it
    brokers = [PostgresBroker(pg_dsn, schema=schema) for _ in range(4)]
    barrier = threading.Barrier(len(brokers))
    errors: list[BaseException] = []

    def run(broker: PostgresBroker) -> None:
        try:
            barrier.wait()
            broker.migrate()
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    try:
        for broker in brokers:
            broker.open()
        threads = [threading.Thread(target=run, args=(b,)) for b in brokers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        versions = pg_conn.execute(
            sql.SQL("SELECT version FROM {} WHERE table_name = 'taskmaster_jobs'").format(
                sql.Identifier(schema, "taskmaster_schema_versions")
            )
        ).fetchall()
        assert versions == [(v,) for v in range(1, SCHEMA_VERSION + 1)]
        assert brokers[0].put([job()]) != [None]
        assert brokers[1].jobs()[0].state is JobState.QUEUED
    finally:
        for broker in brokers:
            broker.close()
        pg_conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def test_two_tables_in_one_schema_are_independent(
    make_pg_harness: Callable[..., Harness],
) -> None:
    schema = unique_schema()
    first: Any = make_pg_harness(schema=schema).broker
    second: Any = make_pg_harness(schema=schema, table="other_jobs").broker
    assert first.names.channel != second.names.channel
    heard = Recorder()
    second.subscribe(["q"], heard)
    first.put([job("q")])
    (other_id,) = second.put([job("q")])
    heard.wait_for("q")
    assert heard.calls == ["q"]  # only the put on its own table
    assert [c.id for c in second.claim(["q"], 10, 30)] == [other_id]
    first.drop_jobs_table()
    assert second.schema_version() == SCHEMA_VERSION
