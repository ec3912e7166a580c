"""The taskmaster command line, run as a user would (a real subprocess)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from taskmaster_core._cli import main


def taskmaster(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "taskmaster_core._cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_demo_prints_the_summary_of_the_original_example() -> None:
    result = taskmaster("demo", "--jobs", "1000", "--concurrency", "4")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "taskmaster demo on MemoryBroker: 1,000 jobs, concurrency 4"
    assert "  acked:    500" in lines
    assert "  failed:   500" in lines
    assert any(line.startswith("  rate:") and line.endswith("jobs/s") for line in lines)
    assert result.stderr == ""


def test_demo_defaults_to_ten_thousand_jobs_on_three_workers(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TASKMASTER_URL", raising=False)
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "10,000 jobs, concurrency 3" in out
    assert "  acked:    5,000" in out
    assert "  failed:   5,000" in out


# A core-only install (`pip install -e .`, the README's demo command) has no
# psycopg. Setting a module to None in sys.modules makes importing it fail as
# if it were not installed.
WITHOUT_PSYCOPG = (
    "import sys\n"
    "sys.modules['psycopg'] = sys.modules['psycopg_pool'] = None\n"
    "from taskmaster_core._cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def without_psycopg(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_PSYCOPG, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TASKMASTER_URL": ""},
        check=False,
    )


def test_the_demo_runs_on_a_core_only_install() -> None:
    result = without_psycopg("demo", "--jobs", "100")
    assert result.returncode == 0, result.stderr
    assert "  acked:    50" in result.stdout.splitlines()
    assert "  failed:   50" in result.stdout.splitlines()


def test_a_postgres_url_without_the_postgres_extra_says_what_to_install() -> None:
    result = without_psycopg("--url", "postgresql://localhost/app", "stats")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "taskmaster: error: postgresql:// needs the postgres extra: "
        "pip install 'taskmaster-jobs[postgres]' (import of psycopg halted; None in sys.modules)"
    ]


def test_the_postgres_package_names_the_missing_extra() -> None:
    script = (
        "import sys\n"
        "sys.modules['psycopg'] = None\n"
        "import taskmaster_postgres\n"
        "try:\n"
        "    taskmaster_postgres.PostgresBroker\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.startswith(
        "taskmaster_postgres.PostgresBroker needs the postgres extra: "
        "pip install 'taskmaster-jobs[postgres]'"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--url", "nope", "stats"], "is not a URL"),
        (["--url", "redis://x", "stats"], "no installed plugin handles"),
        (["--url", "memory://", "put", "q", "{bad json"], "payload is not valid JSON"),
        (["--url", "memory://", "put", "q", "@/no/such/file.json"], "cannot read payload file"),
        (["--url", "memory://", "put", "", "1"], "queue name must be a non-empty string"),
        (["--url", "memory://", "put", "q", "1", "--serializer", "yaml"], "unknown serializer"),
        (["--url", "memory://", "requeue"], "taskmaster requeue: error: give exactly one of"),
        (["--url", "memory://", "delete"], "taskmaster delete: error: give job ids or --queue"),
        (["stats"], "stats needs a broker: pass --url or set TASKMASTER_URL"),
        (["--url", "postgresql://u:pw@[::1/db", "stats"], "broker URL is malformed"),
        (
            ["--url", "postgresql://nobody@127.0.0.1:1/none", "stats"],
            "could not connect to PostgreSQL",
        ),
    ],
)
def test_user_mistakes_are_one_line_and_exit_nonzero(args: list[str], message: str) -> None:
    result = taskmaster(*args, env={"TASKMASTER_URL": ""})
    assert result.returncode == (1 if "connect" in message else 2)
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["prune", "--older-than", "1d", "--state", "running"],
            "taskmaster prune: error: argument --state: 'running' is not one of: done, failed"
            " (see 'taskmaster prune --help')",
        ),
        (
            ["delete", "--queue", "q", "--state", "bogus"],
            "taskmaster delete: error: argument --state: 'bogus' is not one of: queued, running,"
            " done, failed (see 'taskmaster delete --help')",
        ),
        (
            ["requeue"],
            "taskmaster requeue: error: give exactly one of: job ids, --queue QUEUE, --all"
            " (see 'taskmaster requeue --help')",
        ),
        (
            ["delete"],
            "taskmaster delete: error: give job ids or --queue QUEUE"
            " (see 'taskmaster delete --help')",
        ),
        (
            ["put", "q", "{}", "--bogus"],
            "taskmaster put: error: unrecognized arguments: --bogus (see 'taskmaster put --help')",
        ),
        (
            ["put", "q", "{}", "--delay", "-5"],
            "taskmaster put: error: argument --delay: '-5' must not be negative"
            " (see 'taskmaster put --help')",
        ),
        (
            ["prune", "--older-than", "-1d"],
            "taskmaster prune: error: argument --older-than: '-1d' must not be negative"
            " (see 'taskmaster prune --help')",
        ),
        (
            ["prune", "--older-than=-1.5h"],
            "taskmaster prune: error: argument --older-than: '-1.5h' must not be negative"
            " (see 'taskmaster prune --help')",
        ),
        (
            ["worker", "tests.ops.queues_app:send_welcome"],
            "taskmaster: error: APP must be a Consumer, a list of consumers, or a factory taking"
            " the broker and returning them; tests.ops.queues_app:send_welcome looks like a"
            " handler (its parameter job is annotated Job)",
        ),
    ],
)
def test_a_mistake_in_a_command_names_it_and_points_at_its_help(args: list[str], line: str) -> None:
    result = taskmaster("--url", "memory://", *args)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [line]


def test_negative_looking_values_reach_the_option_they_follow(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--url", "memory://", "put", "q", "{}", "--priority", "-2"]) == 0
    assert capsys.readouterr().out.strip().isdigit()
    assert main(["--url", "memory://", "put", "--dedup-key", "-1d", "q", "{}"]) == 0
    assert capsys.readouterr().out.strip().isdigit()


def test_bad_option_values_are_usage_errors() -> None:
    result = taskmaster("prune", "--older-than", "soon")
    assert result.returncode == 2
    assert "is not a duration" in result.stderr


def test_operator_commands_on_the_memory_broker(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # memory:// lives in one process: each main() call starts empty, so this
    # checks output formats; tests/postgres has the cross-process round trip.
    payload = tmp_path / "payload.json"
    payload.write_text('{"to": "a@b"}')
    url = ["--url", "memory://"]
    assert main([*url, "put", "emails", f"@{payload}", "--priority", "3", "--delay", "5m"]) == 0
    assert capsys.readouterr().out.strip().isdigit()
    assert main([*url, *["stats", "--json"]]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert main([*url, *["stats"]]) == 0
    assert capsys.readouterr().out.strip() == "no jobs"
    assert main([*url, *["failed"]]) == 0
    assert capsys.readouterr().out.strip() == "no failed jobs"
    assert main([*url, *["requeue", "--all"]]) == 0
    assert capsys.readouterr().out.strip() == "requeued 0 job(s)"
    assert main([*url, *["prune", "--older-than", "7d", "--state", "failed"]]) == 0
    assert capsys.readouterr().out.strip() == "pruned 0 job(s)"


def test_failed_json_holds_any_stored_payload() -> None:
    from datetime import UTC, datetime

    from taskmaster_core import JobInfo, JobState
    from taskmaster_core._cli_commands import job_json as _job_json
    from taskmaster_core._plugins import SerializerRegistry

    now = datetime.now(UTC)

    def job(payload: bytes, serializer: str) -> JobInfo:
        return JobInfo(
            id=1, queue="q", state=JobState.FAILED, payload=payload, serializer=serializer,
            priority=0, attempts=3, max_attempts=3, run_at=now, created_at=now, updated_at=now,
            lease_until=None, last_error="boom", dedup_key=None, headers=None,
        )  # fmt: skip

    serializers = SerializerRegistry()
    cases = {
        b'{"to": "a@b"}': ("json", {"to": "a@b"}),
        b"\x82\xa1n\x01\xa1b\xc4\x02hi": ("msgpack", {"n": 1, "b": "aGk="}),  # bytes: base64
        b"\x81\x91\x01\x01": ("msgpack", None),  # a map keyed by an array: no JSON for it
        b"\xff": ("json", None),  # undecodable
        b"{}": ("not-installed", None),
    }
    for stored, (serializer, expected) in cases.items():
        fields = _job_json(job(stored, serializer), serializers)
        json.dumps(fields, allow_nan=False)  # always valid JSON
        assert fields["payload"] == expected, (stored, fields)
        assert ("payload_error" in fields) == (expected is None), fields
        assert fields["payload_base64"] == base64.b64encode(stored).decode()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["put", "q", '{"a": NaN}'], "json cannot carry payload['a'] (float nan)"),
        (["put", "q", '{"a": 1e400}'], "json cannot carry payload['a'] (float inf)"),
    ],
)
def test_a_payload_the_serializer_refuses_is_a_usage_error(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Refused input exits 2 like every other refused input; 1 is for a
    broker that failed."""
    assert main(["--url", "memory://", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
