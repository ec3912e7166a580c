"""Every SQL snippet in docs/operations.md and docs/troubleshooting.md runs
against a real jobs table (the CLI's default, public.taskmaster_jobs)."""

from __future__ import annotations

import re

import psycopg
import pytest

from taskmaster_core import NewJob
from taskmaster_postgres import PostgresBroker

from .helpers import ROOT

pytestmark = pytest.mark.postgres

DOCS = [ROOT / "docs" / "operations.md", ROOT / "docs" / "troubleshooting.md"]
SQL_BLOCK = re.compile(r"^ *```sql\n(.*?)^ *```", re.S | re.M)


def statements() -> list[tuple[str, str]]:
    found = []
    for doc in DOCS:
        for block in SQL_BLOCK.findall(doc.read_text(encoding="utf-8")):
            for statement in block.split(";\n"):
                if statement.strip():
                    found.append((doc.name, statement.strip().rstrip(";")))
    return found


def test_the_docs_have_sql() -> None:
    assert len(statements()) >= 10


def test_every_sql_snippet_runs(broker: PostgresBroker, cli_dsn: str) -> None:
    broker.migrate()
    broker.put([NewJob(queue=q, payload=b"1", serializer="json") for q in ["a", "a", "b"]])
    (lost,) = broker.claim(["b"], limit=1, lease=30)
    failed = broker.claim(["a"], limit=1, lease=30)
    with psycopg.connect(cli_dsn, autocommit=True) as conn:
        conn.execute(
            "UPDATE public.taskmaster_jobs SET lease_until = now() - interval '1 minute'"
            " WHERE id = %s",
            [lost.id],
        )
        conn.execute(
            "UPDATE public.taskmaster_jobs SET state = 'failed', lease_until = NULL,"
            " claim_token = NULL, last_error = 'boom' || chr(10) || 'traceback' WHERE id = %s",
            [failed[0].id],
        )
        stuck = None
        for doc, statement in statements():
            try:
                cursor = conn.execute(statement)
                rows = cursor.fetchall() if cursor.description is not None else None
            except psycopg.Error as exc:
                raise AssertionError(f"{doc}: {exc}\n{statement}") from exc
            if "lease_until < now()" in statement and "expired_for" in statement:
                stuck = rows
    assert stuck is not None and [row[0] for row in stuck] == [lost.id]
