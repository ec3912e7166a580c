"""A tiny third-party broker, outside Taskmaster's packages: it keeps its jobs
in a ``MemoryBroker`` and implements the ``Broker`` protocol by delegating.

It stands for any broker written against docs/plugins.md, "Writing a broker":
test_writing_a_broker.py copies this file next to the guide's test module and
runs the shipped contract suite against it. It imports only the public API.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence
from typing import Any

from taskmaster_core import (
    BrokerBase,
    ClaimedJob,
    JobInfo,
    JobState,
    Lease,
    NewJob,
    QueueStats,
    Settlement,
    Subscription,
    WakeCallback,
)
from taskmaster_memory import MemoryBroker


class MyBroker(BrokerBase):
    """Every protocol method passes to a wrapped memory broker.

    ``clock`` (epoch seconds) and ``keep_done`` are this broker's options."""

    def __init__(self, *, clock: Callable[[], float] = time.time, keep_done: bool = False):
        self._inner = MemoryBroker(clock=clock, keep_done=keep_done)

    @property
    def capabilities(self) -> Any:
        """What the wrapped broker declares it can do (wake-ups)."""
        return self._inner.capabilities

    def open(self) -> None:
        self._inner.open()

    def close(self) -> None:
        self._inner.close()

    def migrate(self) -> None:
        self._inner.migrate()

    def put(self, jobs: Sequence[NewJob], *, connection: Any = None) -> list[int | None]:
        return self._inner.put(jobs, connection=connection)

    def pause(self, queues: Sequence[str]) -> None:
        self._inner.pause(queues)

    def resume(self, queues: Sequence[str]) -> None:
        self._inner.resume(queues)

    def paused(self) -> list[str]:
        return self._inner.paused()

    def claim(self, queues: Sequence[str], limit: int, lease: float) -> list[ClaimedJob]:
        return self._inner.claim(queues, limit, lease)

    def settle(self, settlements: Sequence[Settlement]) -> list[int]:
        return self._inner.settle(settlements)

    def extend(self, leases: Sequence[Lease], lease: float) -> list[int]:
        return self._inner.extend(leases, lease)

    def release(self, leases: Sequence[Lease]) -> int:
        return self._inner.release(leases)

    def requeue(self, *, ids: Collection[int] | None = None, queue: str | None = None) -> int:
        return self._inner.requeue(ids=ids, queue=queue)

    def delete(
        self,
        *,
        ids: Collection[int] | None = None,
        queue: str | None = None,
        states: Collection[JobState] | None = None,
        limit: int | None = None,
    ) -> int:
        return self._inner.delete(ids=ids, queue=queue, states=states, limit=limit)

    def prune(
        self,
        older_than: float,
        *,
        states: Collection[JobState] = (JobState.DONE,),
        queue: str | None = None,
        limit: int | None = None,
    ) -> int:
        return self._inner.prune(older_than, states=states, queue=queue, limit=limit)

    def stats(self, queues: Collection[str] | None = None) -> list[QueueStats]:
        return self._inner.stats(queues)

    def jobs(
        self,
        *,
        ids: Collection[int] | None = None,
        queue: str | None = None,
        states: Collection[JobState] | None = None,
        limit: int = 100,
        after_id: int | None = None,
    ) -> list[JobInfo]:
        return self._inner.jobs(ids=ids, queue=queue, states=states, limit=limit, after_id=after_id)

    def subscribe(self, queues: Collection[str], callback: WakeCallback) -> Subscription:
        return self._inner.subscribe(queues, callback)
