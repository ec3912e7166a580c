from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .helpers import ChaosDB, chaos_db


@pytest.fixture
def chaos(pg_dsn: str, tmp_path: Path) -> Iterator[ChaosDB]:
    """A fresh schema on the test database, with the jobs and runs tables;
    every worker process started through it is killed at the end."""
    with chaos_db(pg_dsn, tmp_path) as db:
        yield db
