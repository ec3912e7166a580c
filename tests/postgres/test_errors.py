"""Every psycopg error becomes one typed BrokerError (taskmaster_postgres/_errors.py),
through the public API, with the driver's exception chained and the message
as clear as before."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import psycopg
import psycopg_pool
import pytest
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.conninfo import make_conninfo

from taskmaster_core import (
    BrokerClosedError,
    BrokerConfigurationError,
    BrokerError,
    BrokerUnavailableError,
    Capability,
    ConfigurationError,
    PermissionDeniedError,
    PlansMigrations,
    SchemaMissingError,
    capabilities_of,
)
from taskmaster_postgres import PostgresBroker
from taskmaster_postgres._dsn import describe_dsn
from taskmaster_postgres._errors import error_type

from ..pg_fixtures import unique_schema
from .helpers import job


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (pg_errors.UndefinedTable("x"), SchemaMissingError),
        (pg_errors.InvalidSchemaName("x"), SchemaMissingError),
        (pg_errors.UndefinedColumn("x"), SchemaMissingError),
        (pg_errors.InsufficientPrivilege("x"), PermissionDeniedError),
        (pg_errors.AdminShutdown("x"), BrokerUnavailableError),
        (pg_errors.CannotConnectNow("x"), BrokerUnavailableError),
        (pg_errors.TooManyConnections("x"), BrokerUnavailableError),
        (pg_errors.ConnectionFailure("x"), BrokerUnavailableError),
        (
            psycopg.OperationalError("server closed the connection unexpectedly"),
            BrokerUnavailableError,
        ),
        (
            psycopg.OperationalError('connection failed: FATAL:  database "x" does not exist'),
            BrokerConfigurationError,
        ),
        (
            psycopg.OperationalError(
                "connection failed: FATAL:  the database system is starting up"
            ),
            BrokerUnavailableError,
        ),
        (pg_errors.InvalidPassword("x"), BrokerConfigurationError),
        (psycopg_pool.PoolTimeout("x"), BrokerUnavailableError),
        (psycopg_pool.PoolClosed("x"), BrokerClosedError),
        (pg_errors.QueryCanceled("canceling statement due to statement timeout"), BrokerError),
        (pg_errors.DeadlockDetected("x"), BrokerError),
        (pg_errors.UniqueViolation("x"), BrokerError),
        (psycopg.ProgrammingError("x"), BrokerError),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else value.__name__,
)
def test_the_translation_map(exc: psycopg.Error, expected: type[BrokerError]) -> None:
    assert error_type(exc) is expected


def test_capabilities_are_declared_per_instance() -> None:
    broker = PostgresBroker("postgresql://u@localhost/app")  # no I/O
    assert capabilities_of(broker) == {
        Capability.TRANSACTIONAL_PUT,
        Capability.WAKE_UPS,
        Capability.PAUSE,
    }
    assert isinstance(broker, PlansMigrations)
    polling = PostgresBroker("postgresql://u@localhost/app", listen=False)
    assert capabilities_of(polling) == {Capability.TRANSACTIONAL_PUT, Capability.PAUSE}


@pytest.mark.postgres
def test_an_unmigrated_table_is_schema_missing(pg_dsn: str) -> None:
    where = describe_dsn(pg_dsn)
    with PostgresBroker(pg_dsn, schema=unique_schema(), listen=False) as broker:
        calls: dict[str, Any] = {
            "put": lambda: broker.put([job("q")]),
            "claim": lambda: broker.claim(["q"], 1, 30),
            "jobs": lambda: broker.jobs(),
            "stats": lambda: broker.stats(),
        }
        for action, call in calls.items():
            with pytest.raises(SchemaMissingError) as caught:
                call()
            error = caught.value
            assert isinstance(error.__cause__, pg_errors.UndefinedTable), action
            assert str(error).startswith(f"{action} failed on {where}: relation "), action
            assert error.where == where and error.reason is not None
            assert error.reason.startswith('relation "') and "does not exist" in error.reason
            # one line, the server's own words: no LINE/caret context of the statement
            assert "\n" not in str(error) and "LINE" not in str(error), action


@pytest.fixture
def bare_role(pg_conn: psycopg.Connection[Any]) -> Iterator[str]:
    role = f"tm_bare_{secrets.token_hex(4)}"
    pg_conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    try:
        yield role
    finally:
        pg_conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        pg_conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


@pytest.mark.postgres
def test_a_role_without_grants_is_permission_denied(
    pg_dsn: str, pg_conn: psycopg.Connection[Any], bare_role: str
) -> None:
    schema = unique_schema()
    with PostgresBroker(pg_dsn, schema=schema, listen=False) as owner:
        owner.migrate()
        pg_conn.execute(
            sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(
                sql.Identifier(schema), sql.Identifier(bare_role)
            )
        )
        dsn = make_conninfo(pg_dsn, user=bare_role)
        with PostgresBroker(dsn, schema=schema, listen=False) as worker:
            for call in (
                lambda: worker.put([job("q")]),
                lambda: worker.claim(["q"], 1, 30),
                lambda: worker.jobs(),
            ):
                with pytest.raises(PermissionDeniedError, match="permission denied for table"):
                    call()
        owner.drop_jobs_table()


@pytest.mark.postgres
def test_an_unreachable_server_is_unavailable() -> None:
    broker = PostgresBroker("postgresql://nobody:secret@127.0.0.1:1/app", connect_timeout=1)
    with pytest.raises(BrokerUnavailableError) as caught:
        broker.open()
    message = str(caught.value)
    assert message.startswith("could not connect to PostgreSQL at nobody@127.0.0.1:1/app: ")
    assert "secret" not in message and "\n" not in message


@pytest.mark.postgres
def test_a_database_that_does_not_exist_is_a_configuration_error(pg_dsn: str) -> None:
    broker = PostgresBroker(make_conninfo(pg_dsn, dbname="no_such_db"), connect_timeout=5)
    with pytest.raises(BrokerConfigurationError) as caught:
        broker.open()
    assert isinstance(caught.value, BrokerError) and isinstance(caught.value, ConfigurationError)
    assert 'database "no_such_db" does not exist' in str(caught.value)


@pytest.mark.postgres
def test_a_statement_timeout_is_a_plain_broker_error(pg_dsn: str) -> None:
    with PostgresBroker(pg_dsn, schema=unique_schema(), listen=False) as broker:
        broker.migrate()
        with psycopg.connect(pg_dsn, autocommit=False) as locker:
            locker.execute(
                sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(broker.names.qualified)
            )
            slow = PostgresBroker(
                pg_dsn, schema=broker.names.schema, listen=False, statement_timeout=0.2
            )
            with slow, pytest.raises(BrokerError) as caught:
                slow.stats()
            locker.rollback()
        assert type(caught.value) is BrokerError
        assert "canceling statement due to statement timeout" in str(caught.value)
        broker.drop_jobs_table()


@pytest.mark.postgres
def test_a_closed_callers_connection_is_unavailable(pg_dsn: str) -> None:
    with PostgresBroker(pg_dsn, schema=unique_schema(), listen=False) as broker:
        broker.migrate()
        conn = psycopg.connect(pg_dsn)
        conn.close()
        with pytest.raises(BrokerUnavailableError, match="put failed on the caller's connection"):
            broker.put([job("q")], connection=conn)
        broker.drop_jobs_table()
