"""The examples run, and the docs show them exactly as they are.

A ```python block in docs/*.md that directly follows a line
``<!-- example: examples/NAME.py -->`` must be that file's content, byte for
byte; every example must be shown somewhere, and must run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
EXAMPLES = ROOT / "examples"
MARKED_BLOCK = re.compile(r"<!-- example: (\S+) -->\n```python\n(.*?)^```", re.S | re.M)

# A line each example must print (stdout and stderr together) when it works.
EXPECTED_OUTPUT = {
    "quickstart_memory.py": "acked and deleted: 5, failed: 5",
    "outcomes_and_retries.py": "state=failed attempts=3/3 error=attempts used up (3/3)",
    "leases_and_scheduling.py": "stale worker's ack refused for jobs: [3]",
    "typed_payloads.py": "failed at consume: job 3: cannot decode payload: payload does not match",
    "custom_middleware.py": "plugin in -> first in -> second in -> request-id=req-7 -> handler",
    "logging_and_errors.py": "status=reject queue=numbers job=2 attempt=1 time=",
    "custom_serializer.py": "job 1: 81 bytes of json+zlib",
    "testing_with_memory_broker.py": "5 passed",
    "async_publisher.py": "put: 1, the same dedup key again: None",
    "async_consumer.py": "the slow page timed out once, then was fetched: 1",
    "pause_queue.py": "after resume: ['daily report', 'welcome ada']",
}
POSTGRES_EXAMPLES = {"postgres_transactional_put.py"}


def marked_blocks() -> list[tuple[str, str, str]]:
    """(doc name, example path, block text) for every marked block in docs/."""
    found = []
    for doc in sorted(DOCS.glob("*.md")):
        for match in MARKED_BLOCK.finditer(doc.read_text(encoding="utf-8")):
            found.append((doc.name, match.group(1), match.group(2)))
    return found


def run_example(name: str, *args: str, env: dict[str, str | None] | None = None) -> str:
    """Run an example with ``env`` on top of this environment (``None``: unset)."""
    merged = {**os.environ, **(env or {})}
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
        env={key: value for key, value in merged.items() if value is not None},
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{name} exited with {result.returncode}:\n{output}"
    return output


def test_every_example_has_an_expected_line_and_a_test() -> None:
    names = {path.name for path in EXAMPLES.glob("*.py")}
    assert names == set(EXPECTED_OUTPUT) | POSTGRES_EXAMPLES


@pytest.mark.parametrize("name", sorted(EXPECTED_OUTPUT))
def test_example_runs(name: str) -> None:
    output = run_example(name, env={"TASKMASTER_URL": "memory://"})
    assert EXPECTED_OUTPUT[name] in output, output


@pytest.mark.postgres
@pytest.mark.parametrize("given", ["argument", "TASKMASTER_URL"])
def test_postgres_example_puts_in_the_callers_transaction(pg_dsn: str, given: str) -> None:
    # The DSN as its argument, or from $TASKMASTER_URL as every other command
    # reads it (not the test suite's own TASKMASTER_TEST_DSN: unset here).
    args, env = ([pg_dsn], {}) if given == "argument" else ([], {"TASKMASTER_URL": pg_dsn})
    output = run_example(
        "postgres_transactional_put.py", *args, env={**env, "TASKMASTER_TEST_DSN": None}
    )
    lines = output.splitlines()
    assert "payment declined: the transaction rolled back" in lines
    stored = [line for line in lines if line.startswith("job ")]
    assert len(stored) == 2, output
    assert stored[0].endswith("stored: True"), output
    assert stored[1].endswith("stored: False"), output
    assert any(line.startswith("sending the receipt for order ") for line in lines), output


@pytest.mark.postgres
def test_testing_example_runs_on_postgres(pg_dsn: str) -> None:
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(pg_dsn)
    host, dbname = str(params.get("host", "")), str(params["dbname"])
    user = str(params.get("user", ""))
    password = f":{params['password']}" if params.get("password") else ""
    if host.startswith("/"):  # a Unix socket directory (the throwaway server)
        url = f"postgresql://{user}@/{dbname}?host={host}"
    else:
        url = f"postgresql://{user}{password}@{host}:{params.get('port', 5432)}/{dbname}"
    output = run_example(
        "testing_with_memory_broker.py", "-k", "any_broker", "--taskmaster-url", url
    )
    assert "1 passed" in output, output


def test_docs_show_examples_exactly() -> None:
    blocks = marked_blocks()
    assert blocks, "no marked example blocks found in docs/"
    for doc, path, text in blocks:
        source = ROOT / path
        assert source.is_file(), f"{doc} shows {path}, which does not exist"
        assert text == source.read_text(encoding="utf-8"), (
            f"the block in docs/{doc} differs from {path}; copy the file into the doc again"
        )


def test_every_example_is_shown_in_the_docs() -> None:
    shown = {Path(path).name for _, path, _ in marked_blocks()}
    missing = {path.name for path in EXAMPLES.glob("*.py")} - shown
    assert not missing, f"examples not shown in any doc: {sorted(missing)}"
