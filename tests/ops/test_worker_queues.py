"""``taskmaster worker APP --queues …`` on Postgres, as an operator runs it:
the option selects the app's consumers that serve those queues (and narrows
a consumer serving several to the selected ones); every job runs through the
handler the app gave its queue, and the other queues' jobs stay queued."""

from __future__ import annotations

from pathlib import Path

import pytest

from taskmaster_core import Publisher
from taskmaster_postgres import PostgresBroker
from tests.ops.queues_app import QUEUES, handled

from .helpers import counts, ok, taskmaster, wait_for, worker

pytestmark = pytest.mark.postgres

APP = "tests.ops.queues_app:make_consumers"
ALL_QUEUES = [queue for served in QUEUES.values() for queue in served]


def put_everywhere(broker: PostgresBroker) -> dict[str, list[int]]:
    """Four jobs on every queue of the app; their ids per queue."""
    publisher = Publisher(broker)
    put = {q: publisher.put_many(q, [{"n": i} for i in range(4)]) for q in ALL_QUEUES}
    return {q: [i for i in ids if i is not None] for q, ids in put.items()}


def run_selected(
    cli_dsn: str, broker: PostgresBroker, tmp_path: Path, selection: str
) -> tuple[str, list[dict[str, object]], dict[str, list[int]]]:
    """Run ``taskmaster worker APP --queues selection`` until the selected
    queues are empty; its log, what the handlers ran, the ids put."""
    ok(cli_dsn, "migrate")
    put = put_everywhere(broker)
    selected = selection.split(",")
    log = tmp_path / "handled.jsonl"
    env = {"QUEUES_APP_LOG": str(log)}
    with worker(cli_dsn, tmp_path / "worker.log", APP, "--queues", selection, env=env) as w:
        wait_for(lambda: len(handled(log)) == 4 * len(selected))
        wait_for(lambda: all(s.unfinished == 0 for s in broker.stats(selected)))
        assert w.stop() == 0, w.output()
    return w.output(), handled(log), put


def test_queues_runs_only_the_consumer_of_that_queue(
    cli_dsn: str, broker: PostgresBroker, tmp_path: Path
) -> None:
    output, runs, put = run_selected(cli_dsn, broker, tmp_path, "Welcome Emails")
    assert "worker running 1 consumer(s): welcome\n" in output, output
    assert {(r["handler"], r["queue"]) for r in runs} == {("send_welcome", "Welcome Emails")}
    assert sorted(r["id"] for r in runs) == put["Welcome Emails"]  # each ran, once
    for queue in ["invoices", "receipts", "refunds", "reports"]:
        assert counts(broker, queue) == {
            "ready": 4, "scheduled": 0, "running": 0, "failed": 0, "done": 0
        }, queue  # fmt: skip


def test_queues_narrows_a_multi_queue_consumer(
    cli_dsn: str, broker: PostgresBroker, tmp_path: Path
) -> None:
    output, runs, put = run_selected(cli_dsn, broker, tmp_path, "invoices,refunds")
    assert "worker running 1 consumer(s): billing\n" in output, output
    assert {r["handler"] for r in runs} == {"bill"}
    assert sorted(r["id"] for r in runs) == sorted(put["invoices"] + put["refunds"])
    for queue in ["Welcome Emails", "receipts", "reports"]:
        assert counts(broker, queue)["ready"] == 4, queue


def test_queues_naming_a_queue_the_app_does_not_serve_exits_2(cli_dsn: str) -> None:
    ok(cli_dsn, "migrate")
    result = taskmaster(cli_dsn, "worker", APP, "--queues", "reports,Welcome-Emails")
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"taskmaster: error: --queues: no consumer of {APP} serves 'Welcome-Emails'; "
        "it serves: Welcome Emails, invoices, receipts, refunds, reports"
    ]
