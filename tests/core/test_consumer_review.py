"""Regressions found by a second reading of the consumer's split into roles."""

from __future__ import annotations

import threading
import time

import pytest

from taskmaster_core import ACK, BrokerError, Consumer, Job, Lease, Outcome, Publisher
from taskmaster_core._ledger import Ledger
from taskmaster_core._types import ClaimedJob

from .test_supervision import FaultyBroker


def test_a_failed_settle_is_retried_without_waiting_for_another_outcome() -> None:
    """One job, its settle fails once: the outcome is recorded after the
    backoff, not left waiting until some other job finishes (meanwhile the
    lease is not extended and the job would run again)."""
    broker = FaultyBroker("settle", BrokerError("database restarting"))
    ran: list[int] = []

    def handler(job: Job) -> Outcome:
        ran.append(job.id)
        return ACK

    with broker, Consumer(broker, "q", handler, lease=5.0, poll_interval=0.05) as consumer:
        Publisher(broker).put("q", {})
        assert consumer.wait_idle(timeout=3), "the outcome was not recorded"
        assert len(ran) == 1 and broker.jobs() == []


def test_a_stop_that_lost_the_race_reports_what_it_saw() -> None:
    """A second stop() that times out while the first is under way does not
    claim that every handler finished."""
    release = threading.Event()

    def slow(job: Job) -> Outcome:
        release.wait(5)
        return ACK

    with FaultyBroker() as broker:
        consumer = Consumer(broker, "q", slow, poll_interval=0.05)
        consumer.start()
        Publisher(broker).put("q", {})
        deadline = time.monotonic() + 5
        while consumer.held == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        first = threading.Thread(target=consumer.stop, kwargs={"timeout": 10})
        first.start()
        time.sleep(0.05)
        assert consumer.stop(timeout=0.1) is False  # still waiting for the handler
        release.set()
        first.join(10)
        assert consumer.stop(timeout=1) is True


def test_a_refused_old_lease_does_not_cancel_a_newer_claim_of_the_job() -> None:
    ledger = Ledger(max_pending=10)
    old = ClaimedJob(
        id=1,
        queue="q",
        payload=b"{}",
        serializer="json",
        priority=0,
        attempt=1,
        max_attempts=3,
        run_at=0.0,
        created_at=0.0,
        headers=None,
        token=10,
    )
    ledger.hold([old], deadline=100.0)
    leases = ledger.leases()
    ledger.forget([old])  # released, then claimed again under a new token
    new = ClaimedJob(**{**{f: getattr(old, f) for f in old.__struct_fields__}, "token": 11})
    ledger.hold([new], deadline=100.0)
    ledger.extended(leases, lost={1}, deadline=200.0)  # the refusal was for token 10
    assert ledger.deadline(1) == 100.0
    assert leases == [Lease(1, 10)]


def test_settings_are_read_only() -> None:
    consumer = Consumer(FaultyBroker(), "q", lambda job: ACK)
    with pytest.raises(AttributeError, match="poll_interval is read-only; use replace"):
        consumer.poll_interval = 0.01  # type: ignore[misc]
    assert consumer.poll_interval == 1.0
