"""``run_worker`` in-process: the signal handling and logging of a worker."""

from __future__ import annotations

import logging
import signal
import time

import pytest

from taskmaster_core import ACK, Consumer, Job, Publisher
from taskmaster_core._worker import run_worker
from taskmaster_memory import MemoryBroker


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
