"""The pause contract: a paused queue's jobs are not claimed, by anyone.

Part of :class:`taskmaster_core.testing.BrokerContract`, for a broker that
declares :attr:`Capability.PAUSE` (:class:`PausesQueues`); skipped otherwise.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from taskmaster_core import (
    ACK,
    Broker,
    Capability,
    ConfigurationError,
    Consumer,
    Job,
    Lease,
    PausesQueues,
    Publisher,
    Settlement,
    WakeCallback,
)

from ._base import LEASE, ContractBase, needs
from ._builders import new_job
from ._harness import wait_until

__all__ = ["PauseContract"]


def pauser(broker: Broker) -> PausesQueues:
    needs(broker, Capability.PAUSE)
    assert isinstance(broker, PausesQueues), "declares Capability.PAUSE but is not PausesQueues"
    return broker


class PauseContract(ContractBase):
    """Pause and resume: stored in the broker, honoured by every claim."""

    def test_a_paused_queue_is_not_claimed_and_still_takes_puts(self, broker: Broker) -> None:
        queues = pauser(broker)
        broker.put([new_job("a"), new_job("b")])
        queues.pause(["a"])
        later = broker.put([new_job("a")])  # puts are still taken
        assert later[0] is not None
        claimed = broker.claim(["a", "b"], 10, LEASE)
        assert [job.queue for job in claimed] == ["b"]
        assert broker.claim(["a"], 10, LEASE) == []
        assert queues.paused() == ["a"]

    def test_resume_makes_the_jobs_claimable_again_in_their_order(self, broker: Broker) -> None:
        queues = pauser(broker)
        ids = broker.put([new_job("a", priority=p) for p in (0, 5, 1)])
        queues.pause(["a"])
        assert broker.claim(["a"], 10, LEASE) == []
        queues.resume(["a"])
        assert queues.paused() == []
        claimed = broker.claim(["a"], 10, LEASE)
        assert [job.id for job in claimed] == [ids[1], ids[2], ids[0]]

    def test_jobs_running_when_their_queue_is_paused_settle_as_usual(self, broker: Broker) -> None:
        queues = pauser(broker)
        broker.put([new_job("a"), new_job("a")])
        first, second = broker.claim(["a"], 2, LEASE)
        queues.pause(["a"])
        leases = [Lease(first.id, first.token), Lease(second.id, second.token)]
        assert broker.extend(leases, LEASE) == []
        settled = [
            Settlement(id=first.id, token=first.token, kind="ack"),
            Settlement(id=second.id, token=second.token, kind="retry", error="later", delay=0),
        ]
        assert broker.settle(settled) == []
        assert broker.claim(["a"], 10, LEASE) == []  # the retried one waits for the resume
        (stats,) = broker.stats(["a"])
        assert (stats.ready, stats.running, stats.paused) == (1, 0, True)

    def test_pause_and_resume_are_idempotent_and_leave_other_queues_alone(
        self, broker: Broker
    ) -> None:
        queues = pauser(broker)
        queues.pause(["a", "b"])
        queues.pause(["a"])
        queues.resume(["b"])
        queues.resume(["b", "never-paused"])
        assert queues.paused() == ["a"]
        queues.resume(["a"])
        queues.resume(["a"])
        assert queues.paused() == []

    def test_stats_flag_paused_queues_even_without_jobs(self, broker: Broker) -> None:
        queues = pauser(broker)
        broker.put([new_job("busy")])
        queues.pause(["idle", "busy"])
        stats = {s.queue: s for s in broker.stats()}
        assert stats["idle"].paused and stats["idle"].unfinished == 0
        assert stats["busy"].paused and stats["busy"].ready == 1
        (named,) = broker.stats(["busy"])
        assert named.paused
        queues.resume(["idle", "busy"])
        assert [s.queue for s in broker.stats()] == ["busy"]
        assert not broker.stats(["busy"])[0].paused

    @pytest.mark.parametrize(
        "bad", ["", "x" * 1001, "nul\x00", 7, "emails"], ids=["empty", "long", "nul", "int", "str"]
    )
    def test_a_name_no_job_could_carry_is_refused(self, broker: Broker, bad: Any) -> None:
        queues = pauser(broker)
        names = bad if bad == "emails" else [bad]  # a bare string is not a list of names
        with pytest.raises(ConfigurationError):
            queues.pause(names)
        with pytest.raises(ConfigurationError):
            queues.resume(names)
        assert queues.paused() == []

    def test_resume_wakes_the_queues_subscribers(self, broker: Broker) -> None:
        queues = pauser(broker)
        needs(broker, Capability.WAKE_UPS)
        queues.pause(["a"])
        broker.put([new_job("a")])
        woken = threading.Event()
        callback: WakeCallback = lambda queue: woken.set() if queue == "a" else None  # noqa: E731
        subscription = broker.subscribe(["a"], callback)
        try:
            woken.clear()  # the put's wake-up, if it came before
            queues.resume(["a"])
            assert woken.wait(10)
        finally:
            subscription.close()

    def test_a_running_consumer_stops_starting_a_paused_queues_jobs_and_goes_on_after(
        self, broker: Broker
    ) -> None:
        queues = pauser(broker)
        handled: list[str] = []

        def handler(job: Job) -> Any:
            handled.append(job.payload)
            return ACK

        publisher = Publisher(broker)
        with Consumer(broker, ["a", "b"], handler, poll_interval=0.05) as consumer:
            queues.pause(["a"])
            publisher.put("a", "a1")
            publisher.put("b", "b1")
            wait_until(lambda: "b1" in handled, consumers=[consumer])
            assert "a1" not in handled
            assert broker.stats(["a"])[0].ready == 1
            queues.resume(["a"])
            wait_until(lambda: "a1" in handled, consumers=[consumer])
