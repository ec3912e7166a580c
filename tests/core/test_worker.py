"""``load_app`` and ``run_worker`` in-process: the consumers a worker runs
(``--queues``, ``--concurrency``), its signal handling and logging."""

from __future__ import annotations

import argparse
import logging
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from taskmaster_core import ACK, ConfigurationError, Consumer, Job, Publisher
from taskmaster_core._worker import load_app, run_worker
from taskmaster_memory import MemoryBroker
from tests.ops.queues_app import QUEUES, bill, handled, send_welcome


def test_a_healthy_worker_is_silent_at_warning_and_stops_on_sigterm(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker = MemoryBroker()
    seen: list[int] = []

    def handler(job: Job) -> object:
        seen.append(job.payload["n"])
        return ACK

    consumer = Consumer(broker, "q", handler, concurrency=2, poll_interval=0.05)

    def ready() -> None:
        # Runs once the consumers are started: put work, let it finish, then
        # send the worker the signal a service manager would.
        Publisher(broker).put_many("q", [{"n": i} for i in range(20)])
        deadline = time.monotonic() + 10
        while len(seen) < 20 and time.monotonic() < deadline:
            time.sleep(0.01)
        signal.raise_signal(signal.SIGTERM)  # to this (the main) thread, handled at once

    caplog.set_level(logging.INFO, logger="taskmaster")
    assert run_worker([consumer], stop_timeout=5, ready=ready) == 0
    assert sorted(seen) == list(range(20))
    records = [r for r in caplog.records if r.name.startswith("taskmaster")]
    assert [r.levelname for r in records if r.levelno >= logging.WARNING] == []
    assert "SIGTERM received: stopping" in caplog.text  # at INFO
    assert "worker stopped cleanly" in caplog.text


QUEUES_APP = "tests.ops.queues_app:make_consumers"


def run_selected(
    broker: MemoryBroker, queues: list[str], log: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[list[Consumer], dict[str, list[int]]]:
    """Put three jobs on every queue of the app, run a worker with ``--queues``
    ``queues`` until the selected queues' jobs are finished; the consumers it
    ran and the ids put per queue."""
    monkeypatch.setenv("QUEUES_APP_LOG", str(log))
    broker.open()
    publisher = Publisher(broker)
    put = {
        queue: [publisher.put(queue, {"n": i}) for i in range(3)]
        for served in QUEUES.values()
        for queue in served
    }
    consumers = load_app(QUEUES_APP, lambda: broker, queues=queues)

    def ready() -> None:
        deadline = time.monotonic() + 10
        while len(handled(log)) < 3 * len(queues) and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.3)  # a moment for any wrongly selected consumer to take more
        signal.raise_signal(signal.SIGTERM)

    assert run_worker(consumers, stop_timeout=5, ready=ready) == 0
    broker.open()  # the worker closed it; the jobs are still there
    return consumers, {q: [i for i in ids if i is not None] for q, ids in put.items()}


def test_queues_selects_the_consumer_serving_that_queue(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker = MemoryBroker()
    log = tmp_path / "handled.jsonl"
    consumers, put = run_selected(broker, ["Welcome Emails"], log, monkeypatch)

    runs = handled(log)
    assert {(r["handler"], r["queue"]) for r in runs} == {("send_welcome", "Welcome Emails")}
    assert sorted(r["id"] for r in runs) == put["Welcome Emails"]  # each ran once
    stats = {s.queue: s for s in broker.stats()}
    assert "Welcome Emails" not in stats  # acked: deleted
    for queue in ["invoices", "receipts", "refunds", "reports"]:
        assert (stats[queue].ready, stats[queue].running) == (3, 0), queue
    assert [(c.name, c.queues, c.handler) for c in consumers] == [
        ("welcome", ("Welcome Emails",), send_welcome)
    ]


def test_queues_narrows_a_multi_queue_consumer_to_the_selected_queues(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker = MemoryBroker()
    log = tmp_path / "handled.jsonl"
    consumers, put = run_selected(broker, ["refunds", "invoices"], log, monkeypatch)

    runs = handled(log)
    assert {r["handler"] for r in runs} == {"bill"}
    assert sorted(r["id"] for r in runs) == sorted(put["invoices"] + put["refunds"])
    stats = {s.queue: s for s in broker.stats()}
    for queue in ["Welcome Emails", "receipts", "reports"]:
        assert (stats[queue].ready, stats[queue].running) == (3, 0), queue
    assert [(c.name, c.queues, c.handler) for c in consumers] == [
        ("billing", ("invoices", "refunds"), bill)
    ]


def test_queues_and_concurrency_apply_to_the_selected_consumers_only() -> None:
    broker = MemoryBroker()
    consumers = load_app(QUEUES_APP, lambda: broker, queues=["reports", "receipts"], concurrency=5)
    assert [(c.name, c.queues, c.concurrency) for c in consumers] == [
        ("billing", ("receipts",), 5),
        ("reports", ("reports",), 5),
    ]
    everything = load_app(QUEUES_APP, lambda: broker)
    assert [c.queues for c in everything] == list(QUEUES.values())


def test_queues_naming_a_queue_no_consumer_serves_is_refused() -> None:
    broker = MemoryBroker()
    with pytest.raises(ConfigurationError) as raised:
        load_app(QUEUES_APP, lambda: broker, queues=["reports", "welcome emails"])
    assert str(raised.value) == (
        "--queues: no consumer of tests.ops.queues_app:make_consumers serves 'welcome emails'; "
        "it serves: Welcome Emails, invoices, receipts, refunds, reports"
    )


APP_MUST_BE = (
    "APP must be a Consumer, a list of consumers, or a factory taking the broker and "
    "returning them; "
)


@pytest.mark.parametrize(
    ("attribute", "reason"),
    [
        ("send_welcome", "looks like a handler (its parameter job is annotated Job)"),
        (
            "unannotated_handler",
            "looks like a handler (called with the broker, it read the broker's .payload,"
            " an attribute of a job)",
        ),
        (
            "handler_touching_no_job_attribute",
            "looks like a handler (called with the broker, it returned ACK, a job's outcome)",
        ),
    ],
)
def test_a_handler_given_as_app_is_refused_with_what_app_must_be(
    attribute: str, reason: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QUEUES_APP_LOG", str(tmp_path / "handled.jsonl"))
    spec = f"tests.ops.queues_app:{attribute}"
    with pytest.raises(ConfigurationError) as raised:
        load_app(spec, MemoryBroker)
    assert str(raised.value) == f"{APP_MUST_BE}{spec} {reason}"
    assert handled(tmp_path / "handled.jsonl") == []  # nothing ran


def test_a_factory_that_fails_is_reported_with_its_own_error_and_the_app_named() -> None:
    with pytest.raises(RuntimeError, match="QUEUES_APP_SMTP_HOST is not set") as raised:
        load_app("tests.ops.queues_app:failing_factory", MemoryBroker)
    assert raised.value.__notes__ == [
        "while calling tests.ops.queues_app:failing_factory (the worker's APP) with the broker"
    ]
    # An AttributeError of the factory's own (not about the broker) is its bug, not a handler.
    with pytest.raises(AttributeError, match="'NoneType' object has no attribute 'consumers'"):
        load_app("tests.ops.queues_app:attribute_error_factory", MemoryBroker)


def test_a_factory_giving_no_consumers_says_what_app_must_be() -> None:
    with pytest.raises(ConfigurationError) as raised:
        load_app("examples.component_app.app:Mailer", MemoryBroker)
    message = str(raised.value)
    assert message.startswith(
        f"{APP_MUST_BE}examples.component_app.app:Mailer did not give Consumer objects "
        "(got <examples.component_app.app.Mailer object at "
    ), message


def test_the_worker_command_keeps_its_signal_handlers_until_the_process_exits(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A second SIGTERM that lands after the worker stopped cleanly, while the
    process is on its way out, must not kill it (the exit status became -15
    for a worker that had stopped cleanly). The command leaves the worker's
    handler installed; run_worker used as a library restores the caller's."""
    import taskmaster_core._cli_commands as commands
    from taskmaster_core import _worker

    broker = MemoryBroker()
    original = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    consumer = Consumer(broker, "q", lambda job: ACK, poll_interval=0.05)
    monkeypatch.setattr(_worker, "load_app", lambda *args, **kwargs: [consumer])
    real_run_worker = _worker.run_worker

    def run_with_a_signal(consumers: Any, **options: Any) -> int:
        return real_run_worker(
            consumers, ready=lambda: signal.raise_signal(signal.SIGTERM), **options
        )

    monkeypatch.setattr(_worker, "run_worker", run_with_a_signal)
    args = argparse.Namespace(app="x:y", queues=None, concurrency=None, stop_timeout=5.0)
    try:
        assert commands.cmd_worker(args, broker) == 0
        assert signal.getsignal(signal.SIGTERM) is not original[signal.SIGTERM]
        with caplog.at_level(logging.WARNING, logger="taskmaster"):
            signal.raise_signal(signal.SIGTERM)  # late: handled, not fatal
        assert "SIGTERM received again" in caplog.text
    finally:
        for sig, handler in original.items():
            signal.signal(sig, handler)
    # As a library, run_worker puts the caller's handlers back.
    other = Consumer(broker, "q", lambda job: ACK, poll_interval=0.05)
    assert (
        real_run_worker([other], stop_timeout=5, ready=lambda: signal.raise_signal(signal.SIGTERM))
        == 0
    )
    assert signal.getsignal(signal.SIGTERM) is original[signal.SIGTERM]
