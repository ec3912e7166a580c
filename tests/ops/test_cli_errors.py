"""Every command's user mistakes against Postgres: one line on stderr, a
non-zero exit code (2 usage, 1 the database), never a traceback.

Decided (and documented in docs/cli.md and docs/troubleshooting.md): a queue
is not a thing of its own, it exists while it has jobs, so ``requeue --queue``,
``delete --queue`` or ``stats`` of a queue without jobs is not an error —
``requeued 0 job(s)``, exit 0.
"""

from __future__ import annotations

import json
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest
from psycopg.conninfo import make_conninfo

from taskmaster_core import NewJob, Settlement
from taskmaster_postgres import PostgresBroker
from taskmaster_postgres._dsn import describe_dsn

from .helpers import ok, taskmaster

pytestmark = pytest.mark.postgres

COMMANDS = {
    "migrate": ["migrate"],
    "put": ["put", "q", "{}"],
    "stats": ["stats"],
    "failed": ["failed"],
    "requeue": ["requeue", "--all"],
    "delete": ["delete", "--queue", "q"],
    "prune": ["prune", "--older-than", "7d"],
    "worker": ["worker", "examples.component_app.app:make_consumers"],
}


def run_all(
    url: str | None, commands: dict[str, list[str]] = COMMANDS
) -> dict[str, subprocess.CompletedProcess[str]]:
    """Every command against ``url``, side by side (an unreachable server
    takes the broker's connect_timeout, 10 s, to give up)."""
    with ThreadPoolExecutor(len(commands)) as pool:
        futures = {name: pool.submit(taskmaster, url, *args) for name, args in commands.items()}
        return {name: future.result() for name, future in futures.items()}


def assert_one_line_errors(
    results: dict[str, subprocess.CompletedProcess[str]], code: int, message: str
) -> None:
    for command, result in results.items():
        stderr = result.stderr
        assert result.returncode == code, f"{command}: {stderr}"
        assert message in stderr, f"{command}: {stderr}"
        assert "Traceback" not in stderr, f"{command}: {stderr}"
        assert len(stderr.strip().splitlines()) == 1, f"{command}: {stderr}"
        assert stderr.startswith("taskmaster: error: "), f"{command}: {stderr}"


def test_an_unreachable_database() -> None:
    results = run_all("postgresql://nobody:secret@127.0.0.1:1/app")
    assert_one_line_errors(results, 1, "could not connect to PostgreSQL at nobody@127.0.0.1:1/app")
    assert not [name for name, result in results.items() if "secret" in result.stderr]


def test_a_database_that_does_not_exist(pg_dsn: str) -> None:
    results = run_all(make_conninfo(pg_dsn, dbname="no_such_db"))
    assert_one_line_errors(results, 1, 'database "no_such_db" does not exist')


def test_a_database_that_was_never_migrated(cli_dsn: str) -> None:
    # The worker too: it looks at the table before it starts claiming, rather
    # than retrying a claim on a missing table forever.
    commands = {name: args for name, args in COMMANDS.items() if name != "migrate"}
    results = run_all(cli_dsn, commands)
    assert_one_line_errors(
        results,
        1,
        '"public.taskmaster_jobs" does not exist'
        " (run `taskmaster migrate` to create the jobs table)",
    )
    # Each says what it could not do (not the broker method that failed:
    # `failed` said "jobs failed on …", as if jobs had failed).
    where = describe_dsn(cli_dsn)
    doing = {
        "put": "put the job",
        "stats": "read the queue stats",
        "failed": "list failed jobs",
        "requeue": "requeue failed jobs",
        "delete": "delete jobs",
        "prune": "prune jobs",
        "worker": "start the worker",
    }
    for name, result in results.items():
        assert result.stderr == (
            f"taskmaster: error: could not {doing[name]} on {where}: "
            'relation "public.taskmaster_jobs" does not exist'
            " (run `taskmaster migrate` to create the jobs table)\n"
        ), name


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://root@127.0.0.1/app", "no installed plugin handles broker URLs with scheme"),
        ("localhost:5432/app", "is not a URL"),
        (None, "needs a broker: pass --url or set TASKMASTER_URL"),
    ],
)
def test_a_wrong_url_or_none(url: str | None, message: str) -> None:
    assert_one_line_errors(run_all(url), 2, message)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["put", "q", "{bad json"], "payload is not valid JSON"),
        (["put", "q", "@/no/such/file.json"], "cannot read payload file"),
        (["put", "q", "1", "--serializer", "yaml"], "unknown serializer"),
        (["put", "", "1"], "queue name must be a non-empty string"),
        (["put", "q", "1", "--at", "2030-01-01T09:00"], "has no time zone"),
        (["put", "q", "1", "--delay", "soon"], "is not a duration"),
        (["requeue"], "taskmaster requeue: error: give exactly one of"),
        (["requeue", "1", "--all"], "taskmaster requeue: error: give exactly one of"),
        (["requeue", "one"], "is not a job id"),
        (["delete"], "taskmaster delete: error: give job ids or --queue"),
        (
            ["delete", "--queue", "q", "--state", "lost"],
            "argument --state: 'lost' is not one of: queued, running, done, failed",
        ),
        (["prune", "--older-than", "7d", "--state", "queued"], "'queued' is not one of: done"),
        (["prune"], "the following arguments are required: --older-than"),
        (["failed", "--limit", "0"], "must be at least 1"),
        (["worker", "no_such_module:app"], "cannot import 'no_such_module'"),
        (["worker", "examples.component_app.app"], "APP must look like"),
        (["worker", "examples.component_app.app:nothing"], "has no attribute 'nothing'"),
        (
            ["worker", "examples.component_app.app:send_welcome"],
            "APP must be a Consumer, a list of consumers, or a factory taking the broker and "
            "returning them; examples.component_app.app:send_welcome looks like a handler",
        ),
        (["prune", "--older-than", "-1d"], "argument --older-than: '-1d' must not be negative"),
    ],
)
def test_usage_mistakes_on_a_migrated_database(args: list[str], message: str, cli_dsn: str) -> None:
    ok(cli_dsn, "migrate")
    result = taskmaster(cli_dsn, *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    # argparse's own errors too: one line, pointing at --help, no usage block.
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("taskmaster"), result.stderr


def test_nothing_to_do_is_not_an_error(cli_dsn: str) -> None:
    ok(cli_dsn, "migrate")
    assert ok(cli_dsn, "requeue", "--queue", "no-such-queue").strip() == "requeued 0 job(s)"
    assert ok(cli_dsn, "requeue", "424242").strip() == "requeued 0 job(s)"
    assert ok(cli_dsn, "delete", "424242").strip() == "deleted 0 job(s)"
    assert ok(cli_dsn, "delete", "--queue", "no-such-queue").strip() == "deleted 0 job(s)"
    assert ok(cli_dsn, "prune", "--older-than", "1d", "--queue", "x").strip() == "pruned 0 job(s)"
    assert ok(cli_dsn, "stats").strip() == "no jobs"
    assert ok(cli_dsn, "stats", "--json", "no-such-queue").strip().startswith("[")
    assert ok(cli_dsn, "failed").strip() == "no failed jobs"


def test_migrate_dry_run_prints_the_sql_and_changes_nothing(
    cli_dsn: str, broker: PostgresBroker
) -> None:
    planned = ok(cli_dsn, "migrate", "--dry-run")
    assert planned.startswith("BEGIN;\n") and planned.rstrip().endswith("COMMIT;")
    assert 'CREATE TABLE "public"."taskmaster_jobs"' in planned
    assert broker.schema_version() == 0  # nothing was run
    assert ok(cli_dsn, "migrate").strip() == "schema is up to date"
    assert ok(cli_dsn, "migrate", "--dry-run").strip() == (
        "-- the schema is up to date: migrate would change nothing"
    )


def test_failed_shows_a_long_error_cut_with_an_ellipsis_and_json_whole(
    cli_dsn: str, broker: PostgresBroker
) -> None:
    """The table cuts the first line of a long error visibly; --json keeps it."""
    broker.migrate()
    long_error = "ValueError: " + "x" * 200
    (job_id,) = broker.put([NewJob(queue="q", payload=b"{}", serializer="json")])
    (claimed,) = broker.claim(["q"], 1, 30.0)
    broker.settle([Settlement(id=claimed.id, token=claimed.token, kind="fail", error=long_error)])
    (row,) = [line for line in ok(cli_dsn, "failed").splitlines() if line.startswith(str(job_id))]
    shown = row.split("  ")[-1]
    assert shown.endswith("…") and len(shown) == 80 and long_error.startswith(shown[:-1])
    (listed,) = json.loads(ok(cli_dsn, "failed", "--json"))
    assert listed["last_error"] == long_error
