"""A hypothesis state machine drives the broker against a small reference model.

The model is the state machine of docs/concepts.md written as plainly as
possible; after every step the broker's stats and jobs must agree with it.
Model time is the total of ``advance`` calls; puts and settles that happen at
the same model time are ordered by a sequence number, which matches the real
clock because real time between steps is far below the 10 s time steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, cast

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from taskmaster_core import Capability, JobState, Lease, PausesQueues, Settlement, capabilities_of

from ._base import ContractBase
from ._builders import new_job
from ._harness import Harness, HarnessFactory

__all__ = ["BrokerMachine", "ModelContract"]

QUEUES = ("a", "b")
LEASE = 30.0


@dataclass
class ModelJob:
    id: int
    queue: str
    priority: int
    max_attempts: int
    dedup_key: str | None
    run_at: tuple[float, int]
    state: JobState = JobState.QUEUED
    attempts: int = 0
    token: int | None = None
    lease_until: float = 0.0


@dataclass
class Model:
    now: float = 0.0
    seq: int = 0
    jobs: dict[int, ModelJob] = field(default_factory=dict)
    paused: set[str] = field(default_factory=set)

    def stamp(self, at: float) -> tuple[float, int]:
        self.seq += 1
        return (at, self.seq)

    def ready(self, job: ModelJob) -> bool:
        return job.state is JobState.QUEUED and job.run_at[0] <= self.now

    def dedup_taken(self, queue: str, key: str) -> bool:
        return any(
            j.queue == queue
            and j.dedup_key == key
            and j.state in (JobState.QUEUED, JobState.RUNNING)
            for j in self.jobs.values()
        )


class BrokerMachine(RuleBasedStateMachine):
    def __init__(self, harness: Harness) -> None:
        super().__init__()
        self.harness = harness
        self.broker = harness.broker
        self.model = Model()
        self.stale: list[Lease] = []
        self.pausable = isinstance(self.broker, PausesQueues) and (
            Capability.PAUSE in capabilities_of(self.broker)
        )

    @initialize()
    def start_empty(self) -> None:
        self.broker.delete()
        if self.pausable:
            pauser = cast(PausesQueues, self.broker)
            pauser.resume(pauser.paused())

    # -- rules ---------------------------------------------------------------

    @rule(
        queue=st.sampled_from(QUEUES),
        priority=st.integers(0, 2),
        delay=st.sampled_from([0, 0, 20]),
        max_attempts=st.integers(1, 3),
        dedup_key=st.sampled_from([None, None, "k1", "k2"]),
    )
    def put(
        self, queue: str, priority: int, delay: int, max_attempts: int, dedup_key: str | None
    ) -> None:
        (job_id,) = self.broker.put(
            [
                new_job(
                    queue,
                    priority=priority,
                    delay=delay,
                    max_attempts=max_attempts,
                    dedup_key=dedup_key,
                )
            ]
        )
        model = self.model
        if dedup_key is not None and model.dedup_taken(queue, dedup_key):
            assert job_id is None
            return
        assert job_id is not None
        model.jobs[job_id] = ModelJob(
            id=job_id,
            queue=queue,
            priority=priority,
            max_attempts=max_attempts,
            dedup_key=dedup_key,
            run_at=model.stamp(model.now + delay),
        )

    @rule(queues=st.sampled_from([("a",), ("b",), ("a", "b")]), limit=st.integers(1, 4))
    def claim(self, queues: tuple[str, ...], limit: int) -> None:
        model = self.model
        for job in model.jobs.values():  # reclaim expired leases of these queues
            if (
                job.queue in queues
                and job.state is JobState.RUNNING
                and job.lease_until <= model.now
            ):
                assert job.token is not None
                self.stale.append(Lease(job.id, job.token))
                job.token = None
                job.state = JobState.FAILED if job.attempts >= job.max_attempts else JobState.QUEUED
        ready = sorted(
            (
                j
                for j in model.jobs.values()
                if j.queue in queues and j.queue not in model.paused and model.ready(j)
            ),
            key=lambda j: (-j.priority, j.run_at, j.id),
        )
        expected = [j.id for j in ready[:limit]]
        claimed = self.broker.claim(list(queues), limit, LEASE)
        assert [c.id for c in claimed] == expected
        for c in claimed:
            job = model.jobs[c.id]
            job.state = JobState.RUNNING
            job.attempts += 1
            job.token = c.token
            job.lease_until = model.now + LEASE
            assert c.attempt == job.attempts

    @precondition(lambda self: self.pausable)
    @rule(queue=st.sampled_from(QUEUES))
    def pause(self, queue: str) -> None:
        cast(PausesQueues, self.broker).pause([queue])
        self.model.paused.add(queue)

    @precondition(lambda self: self.pausable)
    @rule(queue=st.sampled_from(QUEUES))
    def resume(self, queue: str) -> None:
        cast(PausesQueues, self.broker).resume([queue])
        self.model.paused.discard(queue)

    def _running(self) -> list[ModelJob]:
        return sorted(
            (j for j in self.model.jobs.values() if j.state is JobState.RUNNING),
            key=lambda j: j.id,
        )

    @precondition(lambda self: bool(self._running()))
    @rule(
        pick=st.integers(0, 100),
        kind=st.sampled_from(["ack", "fail", "retry"]),
        delay=st.sampled_from([0, 20]),
    )
    def settle(self, pick: int, kind: str, delay: int) -> None:
        running = self._running()
        job = running[pick % len(running)]
        assert job.token is not None
        refused = self.broker.settle(
            [Settlement(id=job.id, token=job.token, kind=kind, error="e", delay=delay)]  # type: ignore[arg-type]
        )
        # Even past its lease, a job not yet reclaimed is still held: accepted.
        assert refused == []
        model = self.model
        self.stale.append(Lease(job.id, job.token))
        job.token = None
        if kind == "ack":
            del model.jobs[job.id]
        elif kind == "fail":
            job.state = JobState.FAILED
        else:
            job.state = JobState.QUEUED
            job.run_at = model.stamp(model.now + delay)

    @precondition(lambda self: bool(self.stale))
    @rule(pick=st.integers(0, 100), kind=st.sampled_from(["ack", "fail", "retry"]))
    def stale_settle_is_refused(self, pick: int, kind: str) -> None:
        lease = self.stale[pick % len(self.stale)]
        refused = self.broker.settle(
            [Settlement(id=lease.id, token=lease.token, kind=kind)]  # type: ignore[arg-type]
        )
        assert refused == [lease.id]
        assert self.broker.extend([lease], LEASE) == [lease.id]
        assert self.broker.release([lease]) == 0

    @precondition(lambda self: bool(self._running()))
    @rule(pick=st.integers(0, 100))
    def extend(self, pick: int) -> None:
        running = self._running()
        job = running[pick % len(running)]
        assert job.token is not None
        assert self.broker.extend([Lease(job.id, job.token)], LEASE) == []
        job.lease_until = self.model.now + LEASE

    @precondition(lambda self: bool(self._running()))
    @rule(pick=st.integers(0, 100))
    def release(self, pick: int) -> None:
        running = self._running()
        job = running[pick % len(running)]
        assert job.token is not None
        assert self.broker.release([Lease(job.id, job.token)]) == 1
        self.stale.append(Lease(job.id, job.token))
        job.token = None
        job.state = JobState.QUEUED
        job.attempts -= 1

    @rule(seconds=st.sampled_from([10, 20, 40]))
    def advance(self, seconds: int) -> None:
        self.harness.advance(seconds)
        self.model.now += seconds

    @rule(queue=st.sampled_from([None, *QUEUES]))
    def requeue(self, queue: str | None) -> None:
        model = self.model
        expected = 0
        for job in sorted(model.jobs.values(), key=lambda j: j.id):
            if job.state is not JobState.FAILED or (queue is not None and job.queue != queue):
                continue
            if job.dedup_key is not None and model.dedup_taken(job.queue, job.dedup_key):
                continue
            job.state = JobState.QUEUED
            job.attempts = 0
            job.run_at = model.stamp(model.now)
            expected += 1
        assert self.broker.requeue(queue=queue) == expected

    # -- invariants ------------------------------------------------------------

    @invariant()
    def stats_agree(self) -> None:
        model = self.model
        expected: dict[str, tuple[int, int, int, int, bool]] = {
            queue: (0, 0, 0, 0, True) for queue in model.paused
        }
        for job in model.jobs.values():
            ready, scheduled, running, failed, paused = expected.get(job.queue, (0, 0, 0, 0, False))
            if job.state is JobState.QUEUED:
                if model.ready(job):
                    ready += 1
                else:
                    scheduled += 1
            elif job.state is JobState.RUNNING:
                running += 1
            else:
                failed += 1
            expected[job.queue] = (ready, scheduled, running, failed, paused)
        actual = {
            s.queue: (s.ready, s.scheduled, s.running, s.failed, s.paused)
            for s in self.broker.stats()
        }
        assert actual == expected

    @invariant()
    def jobs_agree(self) -> None:
        actual = {j.id: (j.state, j.attempts) for j in self.broker.jobs(limit=10_000)}
        expected = {j.id: (j.state, j.attempts) for j in self.model.jobs.values()}
        assert actual == expected


class ModelContract(ContractBase):
    """The broker against the reference model, through random sequences of
    put, claim, settle (also with stale tokens), extend, release, advance and
    requeue, and pause and resume for a broker that can."""

    model_examples: ClassVar[int] = 40
    """Hypothesis examples of 40 steps each; raise it for a fast broker."""

    @pytest.mark.parametrize("steps", [40])
    def test_broker_agrees_with_the_reference_model(
        self, make_harness: HarnessFactory, steps: int
    ) -> None:
        harness = make_harness()
        run_state_machine_as_test(
            lambda: BrokerMachine(harness),  # type: ignore[arg-type]  # any factory will do
            settings=settings(
                max_examples=self.model_examples,
                stateful_step_count=steps,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow],
            ),
        )
