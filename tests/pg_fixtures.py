"""PostgreSQL for the test suite (loaded by tests/conftest.py).

Where the server comes from:

- ``TASKMASTER_TEST_DSN`` if set (CI sets it to the machine's Postgres); it
  must be reachable, or the Postgres tests fail.
- Otherwise a throwaway server from the ``pgserver`` package (PostgreSQL 16
  binaries from PyPI, part of the test extra), in a temporary directory,
  listening on a Unix socket only, removed at the end of the session. As root,
  pgserver runs initdb and the server as an unprivileged ``pgserver`` system
  user it creates (PostgreSQL refuses to run as root).
- With neither, Postgres tests skip, except in CI (``CI=true``/``1``), where
  they fail: they never skip silently there.

Each session creates its own database (``taskmaster_test_<random>``, dropped
at the end), and each harness its own schema, so parallel and repeated runs
never collide.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from taskmaster_core.testing import Harness
from taskmaster_postgres import PostgresBroker

DSN_VARIABLE = "TASKMASTER_TEST_DSN"


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def postgres_unavailable(reason: str) -> NoReturn:
    if _in_ci():
        pytest.fail(f"PostgreSQL is required in CI but unavailable: {reason}", pytrace=False)
    pytest.skip(f"PostgreSQL unavailable: {reason} (set {DSN_VARIABLE} or install pgserver)")


@pytest.fixture(scope="session")
def pg_server_dsn() -> Iterator[str]:
    """A DSN for a PostgreSQL server with rights to create databases."""
    configured = os.environ.get(DSN_VARIABLE)
    if configured:
        yield configured
        return
    try:
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (root in a container).
            warnings.simplefilter("ignore")
            from pgserver.postgres_server import get_server
    except ImportError as exc:
        postgres_unavailable(f"{DSN_VARIABLE} is not set and pgserver is not installed ({exc})")
    datadir = tempfile.mkdtemp(prefix="taskmaster-pg-")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            server = get_server(datadir, cleanup_mode="delete")
    except Exception as exc:
        shutil.rmtree(datadir, ignore_errors=True)
        postgres_unavailable(f"could not start a throwaway server with pgserver: {exc!r}")
    try:
        yield str(server.get_uri())
    finally:
        server.cleanup()
        shutil.rmtree(datadir, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_dsn(pg_server_dsn: str) -> Iterator[str]:
    """A DSN for a fresh database of this test session, dropped at the end."""
    name = f"taskmaster_test_{secrets.token_hex(5)}"
    try:
        with psycopg.connect(pg_server_dsn, autocommit=True, connect_timeout=10) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.Error as exc:
        pytest.fail(f"cannot create a test database on the PostgreSQL server: {exc}")
    try:
        yield make_conninfo(pg_server_dsn, dbname=name)
    finally:
        with psycopg.connect(pg_server_dsn, autocommit=True, connect_timeout=10) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture
def pg_conn(pg_dsn: str) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
    """An autocommit connection to the session database, for test-side SQL."""
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        yield conn


def unique_schema() -> str:
    return f"tm_{secrets.token_hex(6)}"


def shift_time(conn: psycopg.Connection[Any], broker: PostgresBroker, seconds: float) -> None:
    """Make ``seconds`` pass for ``broker``: every stored time moves back."""
    conn.execute(
        sql.SQL(
            "WITH d AS (SELECT %s * interval '1 second' AS d)"
            " UPDATE {} SET run_at = run_at - d.d, lease_until = lease_until - d.d,"
            " created_at = created_at - d.d, updated_at = updated_at - d.d FROM d"
        ).format(broker.names.qualified),
        [float(seconds)],
    )


@contextmanager
def harness_factory(pg_dsn: str) -> Iterator[Callable[..., Harness]]:
    """Build open, migrated PostgresBrokers, each on its own fresh schema;
    close them and drop their schemas on exit."""
    brokers: list[PostgresBroker] = []
    with psycopg.connect(pg_dsn, autocommit=True) as admin:

        def make(**options: Any) -> Harness:
            options.setdefault("schema", unique_schema())
            # advance() jumps time, so look for expired leases on every claim.
            options.setdefault("reclaim_interval", 0.0)
            broker = PostgresBroker(pg_dsn, **options)
            brokers.append(broker)
            broker.open()
            broker.migrate()

            def advance(seconds: float) -> None:
                shift_time(admin, broker, seconds)

            return Harness(kind="postgres", broker=broker, advance=advance)

        try:
            yield make
        finally:
            for broker in brokers:
                broker.close()
            for schema in {b.names.schema for b in brokers}:
                admin.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
                )


@pytest.fixture
def make_pg_harness(pg_dsn: str) -> Iterator[Callable[..., Harness]]:
    """A factory of Postgres harnesses, ``(**broker_options) -> Harness``."""
    with harness_factory(pg_dsn) as make:
        yield make


@pytest.fixture(scope="module")
def make_pg_harness_module(pg_dsn: str) -> Iterator[Callable[..., Harness]]:
    """The same, for module-scoped data (large tables built once)."""
    with harness_factory(pg_dsn) as make:
        yield make
