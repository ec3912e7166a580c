"""A consumer never runs half-dead: a fault in any of its threads (fetcher,
settler, lease keeper, a worker outside the handler guard) is logged once
with its traceback, the consumer stops and says it is unhealthy, and
``taskmaster worker`` exits 4. A ``BrokerError`` (the database is down) is
not such a fault: it is retried as before."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from typing import Any

import pytest

from taskmaster_core import (
    ACK,
    BrokerError,
    ClaimedJob,
    Consumer,
    Job,
    Publisher,
    TaskmasterError,
)
from taskmaster_core._ledger import Ledger
from taskmaster_memory import MemoryBroker

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class FaultyBroker(MemoryBroker):
    """A memory broker whose ``method`` raises ``error`` once."""

    def __init__(self, method: str = "", error: BaseException | None = None) -> None:
        super().__init__()
        self.method = method
        self.error = error
        self.claims = 0

    def _fault(self, method: str) -> None:
        if method == self.method and self.error is not None:
            error, self.error = self.error, None
            raise error

    def claim(self, queues: Any, limit: int, lease: float) -> list[ClaimedJob]:
        self.claims += 1
        self._fault("claim")
        return super().claim(queues, limit, lease)

    def settle(self, settlements: Any) -> list[int]:
        self._fault("settle")
        return super().settle(settlements)

    def extend(self, leases: Any, lease: float) -> list[int]:
        self._fault("extend")
        return super().extend(leases, lease)


@pytest.fixture
def caplog_consumer(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.WARNING, logger="taskmaster.consumer")
    return caplog


def slow_ack(job: Job) -> object:
    time.sleep(0.3)  # long enough for a heartbeat at lease / 3
    return ACK


ROLES = {
    # role: (broker method that raises, handler)
    "fetcher": ("claim", slow_ack),
    "settler": ("settle", slow_ack),
    "lease-keeper": ("extend", slow_ack),
}


def wait_until(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def assert_died_once(
    consumer: Consumer, broker: FaultyBroker, caplog: pytest.LogCaptureFixture, role: str
) -> None:
    """The consumer stopped on its own, unhealthy, with one ERROR record
    carrying the traceback, and it claims nothing more."""
    assert consumer.wait_stopped(10), "the consumer kept running after a role died"
    assert not consumer.healthy
    assert isinstance(consumer.error, RuntimeError)
    died = [r for r in caplog.records if "thread died" in r.getMessage()]
    assert len(died) == 1, caplog.text
    assert died[0].levelno == logging.ERROR
    assert f"its {role} thread died" in died[0].getMessage()
    assert died[0].exc_info is not None and died[0].exc_info[1] is consumer.error
    claims = broker.claims
    Publisher(broker).put("q", {"late": True})
    time.sleep(0.3)  # six poll intervals
    assert broker.claims == claims
    (stats,) = broker.stats(["q"])
    assert stats.ready >= 1


@pytest.mark.parametrize("role", sorted(ROLES))
def test_a_role_that_dies_stops_the_consumer_unhealthy(
    role: str, caplog_consumer: pytest.LogCaptureFixture
) -> None:
    method, handler = ROLES[role]
    broker = FaultyBroker()
    with broker:
        Publisher(broker).put("q", {"n": 1})
        consumer = Consumer(broker, "q", handler, lease=0.3, poll_interval=0.05)
        broker.method, broker.error = method, RuntimeError(f"{method}: a bug")
        with consumer:
            assert_died_once(consumer, broker, caplog_consumer, role)


def test_a_worker_that_dies_outside_the_handler_guard_stops_the_consumer(
    caplog_consumer: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    finish = Ledger.finish
    faults = [RuntimeError("finish: a bug")]

    def faulty_finish(self: Ledger, *args: Any) -> int:
        if faults:
            raise faults.pop()
        return finish(self, *args)

    monkeypatch.setattr(Ledger, "finish", faulty_finish)
    broker = FaultyBroker()
    with broker:
        Publisher(broker).put("q", {"n": 1})
        with Consumer(broker, "q", lambda job: ACK, concurrency=2, poll_interval=0.05) as consumer:
            assert_died_once(consumer, broker, caplog_consumer, "worker-1")


def test_run_raises_when_the_consumer_died() -> None:
    broker = FaultyBroker("claim", RuntimeError("claim: a bug"))
    with broker:
        consumer = Consumer(broker, "q", lambda job: ACK, poll_interval=0.05)
        with pytest.raises(TaskmasterError, match="one of its threads died") as raised:
            consumer.run()
        assert isinstance(raised.value.__cause__, RuntimeError)


@pytest.mark.parametrize("method", ["claim", "settle", "extend"])
def test_a_broker_error_is_retried_not_fatal(
    method: str, caplog_consumer: pytest.LogCaptureFixture
) -> None:
    broker = FaultyBroker(method, BrokerError(f"{method}: the database is down"))
    with broker:
        Publisher(broker).put_many("q", [{"n": n} for n in range(3)])
        with Consumer(broker, "q", slow_ack, lease=0.3, poll_interval=0.05) as consumer:
            wait_until(lambda: not any(s.unfinished for s in broker.stats(["q"])))
            assert consumer.healthy
        assert consumer.healthy
        assert "thread died" not in caplog_consumer.text
        assert f"{method}: the database is down" in caplog_consumer.text  # a WARNING


def test_the_worker_exits_4_when_a_consumer_dies() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "taskmaster_core._cli",
            "--url",
            "memory://",
            "worker",
            "tests.core.faulty_app:make_consumers",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 4, result.stderr
    assert "consumer[faulty]: its fetcher thread died" in result.stderr
    assert "RuntimeError: claim: a bug in the broker" in result.stderr  # the traceback
    assert "consumer(s) died: consumer[faulty]" in result.stderr
