"""``taskmaster demo`` on Postgres: what it leaves behind is what docs/cli.md says."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from taskmaster_core._demo import DEMO_QUEUE

from .helpers import ok

pytestmark = pytest.mark.postgres

CLI_DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def test_demo_on_postgres_leaves_its_failed_jobs_in_its_queue_as_documented(
    cli_dsn: str,
) -> None:
    out = ok(cli_dsn, "demo", "--jobs", "100", "--no-progress")
    assert "  failed:   50" in out.splitlines()
    (stats,) = json.loads(ok(cli_dsn, "stats", "--json", DEMO_QUEUE))
    assert (stats["failed"], stats["ready"], stats["running"]) == (50, 0, 0)
    # A rerun starts clean: it deletes its own queue first, and only that queue.
    ok(cli_dsn, "put", "other", "{}")
    ok(cli_dsn, "demo", "--jobs", "10", "--no-progress")
    (stats,) = json.loads(ok(cli_dsn, "stats", "--json", DEMO_QUEUE))
    assert stats["failed"] == 5
    (other,) = json.loads(ok(cli_dsn, "stats", "--json", "other"))
    assert other["ready"] == 1

    demo_section = CLI_DOC.read_text(encoding="utf-8").split("### demo\n", 1)[1]
    demo_section = " ".join(demo_section.split("\n### ", 1)[0].split())
    assert (
        f"leaves its failed jobs in the queue `{DEMO_QUEUE}`" in demo_section
        and f"taskmaster delete --queue {DEMO_QUEUE}" in demo_section
    ), demo_section
