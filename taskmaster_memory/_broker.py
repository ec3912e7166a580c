"""MemoryBroker: the whole broker contract in one process, without I/O.

Jobs live in dicts and heaps behind one lock. Per queue there is a heap of
ready jobs (priority, then due time, then id), a heap of scheduled jobs (due
time) and a heap of leases (expiry). Heap entries are never removed eagerly:
each carries the job's version, and an entry whose version is stale is
skipped when it reaches the top. Payloads are stored as the bytes the
publisher encoded, so the real serializer runs on put and on claim.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable, Collection, Sequence
from datetime import UTC, datetime
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
)

__all__ = ["MemoryBroker"]

_QUEUED, _RUNNING = JobState.QUEUED, JobState.RUNNING
_DONE, _FAILED = JobState.DONE, JobState.FAILED
_FINISHED = frozenset({_DONE, _FAILED})


class _Record:
    __slots__ = (
        "attempts",
        "created_at",
        "dedup_key",
        "headers",
        "id",
        "last_error",
        "lease_until",
        "max_attempts",
        "payload",
        "priority",
        "queue",
        "run_at",
        "serializer",
        "state",
        "token",
        "updated_at",
        "version",
    )

    def __init__(self, job_id: int, job: NewJob, now: float, run_at: float) -> None:
        self.id = job_id
        self.queue = job.queue
        self.payload = job.payload
        self.serializer = job.serializer
        self.priority = job.priority
        self.attempts = 0
        self.max_attempts = job.max_attempts
        self.run_at = run_at
        self.created_at = now
        self.updated_at = now
        self.lease_until: float | None = None
        self.token: int | None = None
        self.state = _QUEUED
        self.dedup_key = job.dedup_key
        self.last_error: str | None = None
        self.headers = dict(job.headers) if job.headers else None
        self.version = 0


class _Queue:
    __slots__ = ("leased", "ready", "scheduled")

    def __init__(self) -> None:
        self.ready: list[tuple[int, float, int, int]] = []  # (-priority, run_at, id, version)
        self.scheduled: list[tuple[float, int, int]] = []  # (run_at, id, version)
        self.leased: list[tuple[float, int, int]] = []  # (lease_until, id, version)


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

    capabilities = frozenset({Capability.WAKE_UPS})

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        keep_done: bool = False,
    ) -> None:
        self._clock = clock
        self.keep_done = keep_done
        self._lock = threading.Lock()
        self._jobs: dict[int, _Record] = {}
        self._queues: dict[str, _Queue] = {}
        self._dedup: dict[tuple[str, str], int] = {}
        self._ids = itertools.count(1)
        self._tokens = itertools.count(1)
        self._subscriptions: list[_Subscription] = []
        self._open = False

    def __repr__(self) -> str:
        return f"<MemoryBroker jobs={len(self._jobs)} open={self._open}>"

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
                if job.dedup_key is not None and (job.queue, job.dedup_key) in self._dedup:
                    ids.append(None)
                    continue
                run_at = job.run_at if job.run_at is not None else now + job.delay
                record = _Record(next(self._ids), job, now, run_at)
                self._jobs[record.id] = record
                if record.dedup_key is not None:
                    self._dedup[(record.queue, record.dedup_key)] = record.id
                self._enqueue(record, now)
                woken.add(record.queue)
                ids.append(record.id)
        self._wake(woken)
        return ids

    def _queue(self, name: str) -> _Queue:
        queue = self._queues.get(name)
        if queue is None:
            queue = self._queues[name] = _Queue()
        return queue

    def _enqueue(self, record: _Record, now: float) -> None:
        """Put a queued record on its ready or scheduled heap (version current)."""
        queue = self._queue(record.queue)
        if record.run_at <= now:
            heapq.heappush(
                queue.ready, (-record.priority, record.run_at, record.id, record.version)
            )
        else:
            heapq.heappush(queue.scheduled, (record.run_at, record.id, record.version))

    def _transition(self, record: _Record, state: JobState, now: float) -> None:
        record.state = state
        record.updated_at = now
        record.version += 1
        if state in _FINISHED or state is _QUEUED:
            record.lease_until = None
            record.token = None
        if state in _FINISHED and record.dedup_key is not None:
            key = (record.queue, record.dedup_key)
            # Only the job holding the key frees it: a finished job (being
            # deleted) may share its key with a newer, unfinished one.
            if self._dedup.get(key) == record.id:
                del self._dedup[key]

    # -- claiming ----------------------------------------------------------

    def claim(self, queues: Sequence[str], limit: int, lease: float) -> list[ClaimedJob]:
        self._check_open()
        if limit <= 0:
            return []
        claimed: list[ClaimedJob] = []
        with self._lock:
            now = self._clock()
            heads: list[_Queue] = []
            for name in dict.fromkeys(queues):
                queue = self._queues.get(name)
                if queue is None:
                    continue
                self._reclaim(queue, now)
                self._promote(queue, now)
                if queue.ready:
                    heads.append(queue)
            lease_until = now + lease
            jobs = self._jobs
            while heads and len(claimed) < limit:
                queue = heads[0] if len(heads) == 1 else min(heads, key=_ready_head)
                _, _, job_id, version = heapq.heappop(queue.ready)
                if not queue.ready:
                    heads.remove(queue)
                record = jobs.get(job_id)
                if record is None or record.version != version:
                    continue  # stale entry
                token = next(self._tokens)
                record.state = _RUNNING
                record.attempts += 1
                record.lease_until = lease_until
                record.token = token
                record.updated_at = now
                record.version += 1
                heapq.heappush(queue.leased, (lease_until, job_id, record.version))
                claimed.append(
                    ClaimedJob(
                        id=job_id,
                        queue=record.queue,
                        payload=record.payload,
                        serializer=record.serializer,
                        priority=record.priority,
                        attempt=record.attempts,
                        max_attempts=record.max_attempts,
                        run_at=record.run_at,
                        created_at=record.created_at,
                        headers=dict(record.headers) if record.headers else None,
                        token=token,
                    )
                )
        return claimed

    def _promote(self, queue: _Queue, now: float) -> None:
        scheduled = queue.scheduled
        while scheduled and scheduled[0][0] <= now:
            _, job_id, version = heapq.heappop(scheduled)
            record = self._jobs.get(job_id)
            if record is not None and record.version == version:
                heapq.heappush(queue.ready, (-record.priority, record.run_at, job_id, version))

    def _reclaim(self, queue: _Queue, now: float) -> None:
        """Expired leases: back to queued, or failed when attempts are used up."""
        leased = queue.leased
        while leased and leased[0][0] <= now:
            _, job_id, version = heapq.heappop(leased)
            record = self._jobs.get(job_id)
            if record is None or record.version != version:
                continue
            if record.attempts >= record.max_attempts:
                record.last_error = (
                    f"worker lost: lease expired during attempt {record.attempts} "
                    f"of {record.max_attempts}"
                )
                self._transition(record, _FAILED, now)
            else:
                record.last_error = f"worker lost: lease expired during attempt {record.attempts}"
                self._transition(record, _QUEUED, now)
                self._enqueue(record, now)  # keeps its run_at: its place in line

    def _held(self, job_id: int, token: int) -> _Record | None:
        record = self._jobs.get(job_id)
        if record is None or record.state is not _RUNNING or record.token != token:
            return None
        return record

    # -- outcomes ----------------------------------------------------------

    def settle(self, settlements: Sequence[Settlement]) -> list[int]:
        self._check_open()
        refused: list[int] = []
        woken: set[str] = set()
        with self._lock:
            now = self._clock()
            for item in settlements:
                record = self._held(item.id, item.token)
                if record is None:
                    refused.append(item.id)
                    continue
                kind = item.kind
                if kind == "ack":
                    self._transition(record, _DONE, now)
                    if not self.keep_done:
                        del self._jobs[record.id]
                elif kind == "fail":
                    record.last_error = item.error
                    self._transition(record, _FAILED, now)
                elif kind == "retry":
                    record.last_error = item.error
                    self._transition(record, _QUEUED, now)
                    record.run_at = now + max(0.0, item.delay)
                    self._enqueue(record, now)
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
                record = self._held(held.id, held.token)
                if record is None:
                    refused.append(held.id)
                    continue
                record.lease_until = until
                record.updated_at = now
                record.version += 1
                heapq.heappush(self._queue(record.queue).leased, (until, record.id, record.version))
        return refused

    def release(self, leases: Sequence[Lease]) -> int:
        self._check_open()
        released = 0
        woken: set[str] = set()
        with self._lock:
            now = self._clock()
            for held in leases:
                record = self._held(held.id, held.token)
                if record is None:
                    continue
                record.attempts = max(0, record.attempts - 1)
                self._transition(record, _QUEUED, now)
                self._enqueue(record, now)
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
            for record in self._select(ids=ids, queue=queue, states=(_FAILED,)):
                if record.dedup_key is not None:
                    key = (record.queue, record.dedup_key)
                    if key in self._dedup:
                        continue  # an unfinished job holds the key: leave this one failed
                    self._dedup[key] = record.id
                record.attempts = 0
                self._transition(record, _QUEUED, now)
                record.run_at = now
                self._enqueue(record, now)
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
            doomed = self._select(ids=ids, queue=queue, states=states)[:limit]
            now = self._clock()
            for record in doomed:
                self._transition(record, _DONE, now)  # releases dedup, invalidates heaps
                del self._jobs[record.id]
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
            old = [r for r in self._select(queue=queue, states=wanted) if r.updated_at <= cutoff]
            doomed = old[:limit]
            for record in doomed:
                del self._jobs[record.id]
            return len(doomed)

    def stats(self, queues: Collection[str] | None = None) -> list[QueueStats]:
        self._check_open()
        wanted = set(queues) if queues is not None else None
        counts: dict[str, dict[str, Any]] = {}
        if wanted is not None:
            for name in wanted:
                counts[name] = {}
        with self._lock:
            now = self._clock()
            for record in self._jobs.values():
                if wanted is not None and record.queue not in wanted:
                    continue
                entry = counts.setdefault(record.queue, {})
                if record.state is _QUEUED:
                    if record.run_at <= now:
                        key = "ready"
                        oldest = entry.get("oldest_ready_age")
                        age = now - record.run_at
                        if oldest is None or age > oldest:
                            entry["oldest_ready_age"] = age
                    else:
                        key = "scheduled"
                else:
                    key = record.state.value
                entry[key] = entry.get(key, 0) + 1
        return [QueueStats(queue=name, **counts[name]) for name in sorted(counts)]

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
            found = self._select(ids=ids, queue=queue, states=states)
            if after_id is not None:
                found = [r for r in found if r.id > after_id]
            return [_info(r) for r in found[: max(0, limit)]]

    def _select(
        self,
        *,
        ids: Collection[int] | None = None,
        queue: str | None = None,
        states: Collection[JobState] | None = None,
    ) -> list[_Record]:
        """Records matching every given filter, by id. Caller holds the lock."""
        if ids is not None:
            candidates = [r for i in sorted(set(ids)) if (r := self._jobs.get(i)) is not None]
        else:
            candidates = sorted(self._jobs.values(), key=lambda r: r.id)
        wanted = None if states is None else {JobState(s) for s in states}
        return [
            r
            for r in candidates
            if (queue is None or r.queue == queue) and (wanted is None or r.state in wanted)
        ]

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


def _ready_head(queue: _Queue) -> tuple[int, float, int, int]:
    return queue.ready[0]


def _info(record: _Record) -> JobInfo:
    return JobInfo(
        id=record.id,
        queue=record.queue,
        state=record.state,
        payload=record.payload,
        serializer=record.serializer,
        priority=record.priority,
        attempts=record.attempts,
        max_attempts=record.max_attempts,
        run_at=_dt(record.run_at),
        created_at=_dt(record.created_at),
        updated_at=_dt(record.updated_at),
        lease_until=None if record.lease_until is None else _dt(record.lease_until),
        last_error=record.last_error,
        dedup_key=record.dedup_key,
        headers=dict(record.headers) if record.headers else None,
    )


def _dt(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)
