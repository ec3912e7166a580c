"""The raw-SQL ceiling: pgbench with custom scripts, one client, on a simple table
and, for one-at-a-time puts, on Taskmaster's own jobs table (its indexes and
NOTIFY trigger), with Taskmaster's own INSERT statement."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from ._common import execute, summarize

TABLE_DDL = """
CREATE TABLE raw_jobs (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue text NOT NULL,
    payload bytea NOT NULL,
    run_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX raw_jobs_ready ON raw_jobs (queue, run_at, id);
"""

SCRIPTS = {
    # name: (script, rows per transaction, needs a pre-filled table)
    "insert_1": ("INSERT INTO raw_jobs (queue, payload) VALUES ('bench', '\\x7b7d');\n", 1, False),
    "insert_100": (
        "INSERT INTO raw_jobs (queue, payload)"
        " SELECT 'bench', '\\x7b7d' FROM generate_series(1, 100);\n",
        100,
        False,
    ),
    "delete_100": (
        "DELETE FROM raw_jobs WHERE id IN (SELECT id FROM raw_jobs WHERE queue = 'bench'"
        " ORDER BY run_at, id FOR UPDATE SKIP LOCKED LIMIT 100);\n",
        100,
        True,
    ),
    "delete_1": (
        "DELETE FROM raw_jobs WHERE id IN (SELECT id FROM raw_jobs WHERE queue = 'bench'"
        " ORDER BY run_at, id FOR UPDATE SKIP LOCKED LIMIT 1);\n",
        1,
        True,
    ),
}

DESCRIPTIONS = {
    "insert_1": "single-row INSERT per transaction",
    "insert_1_jobs_table": "Taskmaster's own one-job INSERT on its jobs table, per transaction",
    "insert_100": "100-row INSERT ... SELECT generate_series per transaction",
    "delete_100": "DELETE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED LIMIT 100)",
    "delete_1": "DELETE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED LIMIT 1)",
}


JOBS_TABLE = "taskmaster_jobs"


def jobs_table_script(dsn: str) -> str:
    """Taskmaster's one-job INSERT (the statement ``put`` sends, its
    parameters bound as literals), after creating the jobs table on ``dsn``."""
    from taskmaster_postgres import PostgresBroker
    from taskmaster_postgres._names import TableNames
    from taskmaster_postgres._sql import Statements

    with PostgresBroker(dsn, table=JOBS_TABLE) as broker:
        broker.migrate()
    statement = Statements(TableNames("public", JOBS_TABLE), keep_done=False, async_commit=True)
    params = {
        "queue": "bench",
        "payload": b"{}",
        "serializer": "json",
        "priority": 0,
        "delay": 0.0,
        "run_at": None,
        "max_attempts": 3,
        "dedup_key": None,
        "headers": None,
    }
    # A client-side cursor binds literals; it takes no binary (%b) placeholders.
    query = statement.put_one.replace(b"%(payload)b", b"%(payload)s")
    with psycopg.connect(dsn) as conn:
        text = psycopg.ClientCursor(conn).mogrify(query, params)
    return " ".join(text.split()) + ";\n"


def find_pgbench() -> str | None:
    found = shutil.which("pgbench")
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin/pgbench"), reverse=True):
        return str(candidate)
    return None


def _pgbench(pgbench: str, dsn: str, script: Path, seconds: int) -> float:
    info = conninfo_to_dict(dsn)
    env = dict(os.environ)
    args = [pgbench, "-n", "-c", "1", "-j", "1", "-M", "prepared", "-T", str(seconds)]
    args += ["-f", str(script)]
    for flag, key in (("-h", "host"), ("-p", "port"), ("-U", "user")):
        if info.get(key):
            args += [flag, str(info[key])]
    if info.get("password"):
        env["PGPASSWORD"] = str(info["password"])
    args.append(str(info["dbname"]))
    out = subprocess.run(args, capture_output=True, text=True, env=env, check=True).stdout
    match = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", out)
    if match is None:
        raise RuntimeError(f"could not read tps from pgbench output:\n{out}")
    return float(match.group(1))


def _reset(dsn: str, prefill: int) -> None:
    execute(dsn, "DROP TABLE IF EXISTS raw_jobs")
    execute(dsn, TABLE_DDL)
    if prefill:
        execute(
            dsn,
            "INSERT INTO raw_jobs (queue, payload)"
            " SELECT 'bench', '\\x7b7d'::bytea FROM generate_series(1, %s)",
            [prefill],
        )
    execute(dsn, "VACUUM ANALYZE raw_jobs")


def run_pgbench(
    dsn: str, repeat: int, seconds: int, prefill: int, log: Any = print
) -> dict[str, dict[str, Any]]:
    """rows/s per script: median/min/max over ``repeat`` runs (after one warm-up)."""
    pgbench = find_pgbench()
    if pgbench is None:
        log("raw SQL: pgbench not found on PATH or under /usr/lib/postgresql; skipped")
        return {}
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="taskmaster-bench-") as tmp:
        for name, (text, rows, needs_rows) in SCRIPTS.items():
            script = Path(tmp) / f"{name}.sql"
            script.write_text(text)
            _reset(dsn, prefill if needs_rows else 0)
            _pgbench(pgbench, dsn, script, 1)  # warm-up
            values = []
            for _ in range(repeat):
                _reset(dsn, prefill if needs_rows else 0)
                tps = _pgbench(pgbench, dsn, script, seconds)
                if needs_rows:
                    left = int(execute(dsn, "SELECT count(*) FROM raw_jobs")[0][0])
                    if left == 0:
                        log(f"raw SQL {name}: the table ran empty; raise the pre-fill")
                values.append(tps * rows)
            results[name] = summarize(values)
            results[name]["description"] = DESCRIPTIONS[name]
            log(f"  raw SQL {name:<19} {results[name]['median']:>12,.0f} rows/s")
        name = "insert_1_jobs_table"
        script = Path(tmp) / f"{name}.sql"
        script.write_text(jobs_table_script(dsn))
        _pgbench(pgbench, dsn, script, 1)  # warm-up
        values = []
        for _ in range(repeat):
            execute(dsn, f"TRUNCATE {JOBS_TABLE}")
            execute(dsn, f"VACUUM ANALYZE {JOBS_TABLE}")
            values.append(_pgbench(pgbench, dsn, script, seconds))
        results[name] = summarize(values)
        results[name]["description"] = DESCRIPTIONS[name]
        log(f"  raw SQL {name:<19} {results[name]['median']:>12,.0f} rows/s")
    return results
