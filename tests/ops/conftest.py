from __future__ import annotations

from collections.abc import Iterator

import pytest

from taskmaster_postgres import PostgresBroker


@pytest.fixture
def cli_dsn(pg_dsn: str) -> Iterator[str]:
    """``pg_dsn`` with no jobs table (the CLI's default, public.taskmaster_jobs),
    dropped again afterwards."""
    with PostgresBroker(pg_dsn) as broker:
        broker.drop_jobs_table()
    yield pg_dsn
    with PostgresBroker(pg_dsn) as broker:
        broker.drop_jobs_table()


@pytest.fixture
def broker(cli_dsn: str) -> Iterator[PostgresBroker]:
    """An open broker on the CLI's table, for the test's own checks."""
    with PostgresBroker(cli_dsn) as broker:
        yield broker
