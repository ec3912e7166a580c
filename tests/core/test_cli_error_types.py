"""The command line acts on the broker error's type, never on its text:
the migrate hint comes from SchemaMissingError, the exit code from the
class, and ``migrate --dry-run`` from the declared PlansMigrations ability."""

from __future__ import annotations

import pytest

from taskmaster_core._cli import main

from .failing_broker import REASON, WHERE

PLUGIN = ["--plugin", "tests.core.failing_broker"]
HINT = " (run `taskmaster migrate` to create the jobs table)"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main([*PLUGIN, *args])
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return code, err


def test_a_missing_schema_gets_the_migrate_hint_by_its_type(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, err = run(capsys, "--url", "failing://schema", "stats")
    assert code == 1
    assert err == f"taskmaster: error: could not read the queue stats on {WHERE}: {REASON}{HINT}\n"


@pytest.mark.parametrize("error", ["permission", "unavailable", "plain"])
def test_other_broker_errors_fail_without_the_hint(
    error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = run(capsys, "--url", f"failing://{error}", "stats")
    assert code == 1
    assert err == f"taskmaster: error: could not read the queue stats on {WHERE}: {REASON}\n"


@pytest.mark.parametrize("error", ["schema", "settings", "unavailable"])
def test_a_broker_that_cannot_open_fails_with_exit_code_1(
    error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # A BrokerConfigurationError is a ConfigurationError too, but the broker
    # failed: exit 1, as for every BrokerError (2 is for the command line).
    code, err = run(capsys, "--url", f"failing://{error}-on-open", "stats")
    assert code == 1
    expected = f"taskmaster: error: cannot open {WHERE}: {REASON}"
    assert err == expected + (HINT if error == "schema" else "") + "\n"


def test_migrate_dry_run_on_a_broker_without_a_migration_plan_says_so(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--url", "memory://", "migrate", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "taskmaster migrate: error: MemoryBroker cannot show its migration SQL (--dry-run) "
        "(see 'taskmaster migrate --help')\n"
    )
