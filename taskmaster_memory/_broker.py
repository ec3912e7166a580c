"""MemoryBroker: the whole broker contract in one process, without I/O.

Jobs live in a :class:`~taskmaster_memory._store.Store` (records and the
per-queue heaps that order them) behind one lock. Payloads are stored as the
bytes the publisher encoded, so the real serializer runs on put and on claim.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Sequence
from typing import Any

from taskmaster_core import (
    BrokerBase,
    BrokerClosedError,
    Capability,
    ClaimedJob,
    ConfigurationError,
    JobInfo,
    JobState,
    Lease,
    NewJob,
    QueueStats,
    Settlement,
    WakeCallback,
    check_new_jobs,
    check_queue_names,
)

from ._store import Record, Store, info

__all__ = ["MemoryBroker"]

_QUEUED = JobState.QUEUED
_DONE, _FAILED = JobState.DONE, JobState.FAILED


class _Subscription:
    def __init__(self, broker: MemoryBroker, queues: frozenset[str], callback: WakeCallback):
        self._broker = broker
        self.queues = queues
        self.callback = callback

    def close(self) -> None:
        self._broker._unsubscribe(self)


class MemoryBroker(BrokerBase):
    """An in-process broker with the same contract as PostgresBroker.

    ``clock`` returns epoch seconds (default ``time.time``); tests inject a
    fake clock to expire leases and bring scheduled jobs due without sleeping.
    ``keep_done`` keeps acked jobs as ``done`` instead of deleting them.
    ``put(connection=...)`` is refused (no transactional put), and there is
    no migration SQL to show (it is not a ``PlansMigrations``).
    """

    capabilities = frozenset({Capability.WAKE_UPS, Capability.PAUSE})

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        keep_done: bool = False,
    ) -> None:
        self._clock = clock
        self.keep_done = keep_done
        self._lock = threading.Lock()
        self._store = Store()
        self._paused: set[str] = set()
        self._subscriptions: list[_Subscription] = []
        self._open = False

    def __repr__(self) -> str:
        return f"<MemoryBroker jobs={len(self._store.jobs)} open={self._open}>"

    # -- lifecycle ---------------------------------------------------------

    def open(self) -> None:
        self._open = True

    def close(self) -> None:
        self._open = False
        with self._lock:
            self._subscriptions.clear()

    def migrate(self) -> None:
        self._check_open()

    def _check_open(self) -> None:
        if not self._open:
            raise BrokerClosedError("MemoryBroker is not open; call open() or use it as `with`")

    # -- putting -----------------------------------------------------------

    def put(self, jobs: Sequence[NewJob], *, connection: Any = None) -> list[int | None]:
        self._check_open()
        if connection is not None:
            raise ConfigurationError(
                "MemoryBroker.put takes no connection: transactional put is a Postgres feature"
            )
        check_new_jobs(jobs)
        ids: list[int | None] = []
        woken: set[str] = set()
        with self._lock:
            now = self._clock()
            for job in jobs:
                if job.dedup_key is not None and (job.queue, job.dedup_key) in self._store.dedup:
                    ids.append(None)
                    continue
                run_at = job.run_at if job.run_at is not None else now + job.delay
                record = Record(next(self._store.ids), job, now, run_at)
                self._store.jobs[record.id] = record
                if record.dedup_key is not None:
                    self._store.dedup[(record.queue, record.dedup_key)] = record.id
                self._store.enqueue(record, now)
                woken.add(record.queue)
                ids.append(record.id)
        self._wake(woken)
        return ids

    # -- claiming ----------------------------------------------------------

    def claim(self, queues: Sequence[str], limit: int, lease: float) -> list[ClaimedJob]:
        self._check_open()
        if limit <= 0:
            return []
        with self._lock:
            return self._store.claim(queues, limit, self._clock(), lease, self._paused)

    # -- pausing -------------------------------------------------------------

    def pause(self, queues: Sequence[str]) -> None:
        self._check_open()
        names = check_queue_names(queues)
        with self._lock:
            self._paused.update(names)

    def resume(self, queues: Sequence[str]) -> None:
        self._check_open()
        names = check_queue_names(queues)
        with self._lock:
            resumed = self._paused & set(names)
            self._paused -= resumed
        self._wake(resumed)

    def paused(self) -> list[str]:
        self._check_open()
        with self._lock:
            return sorted(self._paused)

    # -- outcomes ----------------------------------------------------------

    def settle(self, settlements: Sequence[Settlement]) -> list[int]:
        self._check_open()
        refused: list[int] = []
        woken: set[str] = set()
        with self._lock:
            now = self._clock()
            for item in settlements:
                record = self._store.held(item.id, item.token)
                if record is None:
                    refused.append(item.id)
                    continue
                kind = item.kind
                if kind == "ack":
                    self._store.transition(record, _DONE, now)
                    if not self.keep_done:
                        del self._store.jobs[record.id]
                elif kind == "fail":
                    record.last_error = item.error
                    self._store.transition(record, _FAILED, now)
                elif kind == "retry":
                    record.last_error = item.error
                    self._store.transition(record, _QUEUED, now)
                    record.run_at = now + max(0.0, item.delay)
                    self._store.enqueue(record, now)
                    if record.run_at <= now:
                        woken.add(record.queue)
                else:
                    raise ConfigurationError(f"unknown settlement kind {kind!r}")
        self._wake(woken)
        return refused

    def extend(self, leases: Sequence[Lease], lease: float) -> list[int]:
        self._check_open()
        refused: list[int] = []
        with self._lock:
            now = self._clock()
            until = now + lease
            for held in leases:
                record = self._store.held(held.id, held.token)
                if record is None:
                    refused.append(held.id)
                    continue
                self._store.lease(record, until, now)
        return refused

    def release(self, leases: Sequence[Lease]) -> int:
        self._check_open()
        released = 0
        woken: set[str] = set()
        with self._lock:
            now = self._clock()
            for held in leases:
                record = self._store.held(held.id, held.token)
                if record is None:
                    continue
                record.attempts = max(0, record.attempts - 1)
                self._store.transition(record, _QUEUED, now)
                self._store.enqueue(record, now)
                woken.add(record.queue)
                released += 1
        self._wake(woken)
        return released

    # -- operations --------------------------------------------------------

    def requeue(self, *, ids: Collection[int] | None = None, queue: str | None = None) -> int:
        self._check_open()
        moved = 0
        woken: set[str] = set()
        with self._lock:
            now = self._clock()
            for record in self._store.select(ids=ids, queue=queue, states=(_FAILED,)):
                if record.dedup_key is not None:
                    key = (record.queue, record.dedup_key)
                    if key in self._store.dedup:
                        continue  # an unfinished job holds the key: leave this one failed
                    self._store.dedup[key] = record.id
                record.attempts = 0
                self._store.transition(record, _QUEUED, now)
                record.run_at = now
                self._store.enqueue(record, now)
                woken.add(record.queue)
                moved += 1
        self._wake(woken)
        return moved

    def delete(
        self,
        *,
        ids: Collection[int] | None = None,
        queue: str | None = None,
        states: Collection[JobState] | None = None,
        limit: int | None = None,
    ) -> int:
        self._check_open()
        limit = self._check_limit(limit)
        with self._lock:
            doomed = self._store.select(ids=ids, queue=queue, states=states)[:limit]
            now = self._clock()
            for record in doomed:
                self._store.transition(record, _DONE, now)  # releases dedup, invalidates heaps
                del self._store.jobs[record.id]
            return len(doomed)

    def prune(
        self,
        older_than: float,
        *,
        states: Collection[JobState] = (JobState.DONE,),
        queue: str | None = None,
        limit: int | None = None,
    ) -> int:
        self._check_open()
        wanted = self._prune_states(states)
        limit = self._check_limit(limit)
        with self._lock:
            cutoff = self._clock() - older_than
            old = [
                r for r in self._store.select(queue=queue, states=wanted) if r.updated_at <= cutoff
            ]
            doomed = old[:limit]
            for record in doomed:
                del self._store.jobs[record.id]
            return len(doomed)

    def stats(self, queues: Collection[str] | None = None) -> list[QueueStats]:
        self._check_open()
        with self._lock:
            return self._store.stats(queues, self._clock(), self._paused)

    def jobs(
        self,
        *,
        ids: Collection[int] | None = None,
        queue: str | None = None,
        states: Collection[JobState] | None = None,
        limit: int = 100,
        after_id: int | None = None,
    ) -> list[JobInfo]:
        self._check_open()
        with self._lock:
            found = self._store.select(ids=ids, queue=queue, states=states)
            if after_id is not None:
                found = [r for r in found if r.id > after_id]
            return [info(r) for r in found[: max(0, limit)]]

    # -- wake-ups ----------------------------------------------------------

    def subscribe(self, queues: Collection[str], callback: WakeCallback) -> _Subscription:
        self._check_open()
        subscription = _Subscription(self, frozenset(queues), callback)
        with self._lock:
            self._subscriptions.append(subscription)
        return subscription

    def _unsubscribe(self, subscription: _Subscription) -> None:
        with self._lock:
            if subscription in self._subscriptions:
                self._subscriptions.remove(subscription)

    def _wake(self, queues: set[str]) -> None:
        if not queues or not self._subscriptions:
            return
        for subscription in list(self._subscriptions):
            for name in queues & subscription.queues:
                subscription.callback(name)
