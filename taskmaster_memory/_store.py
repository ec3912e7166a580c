"""The memory broker's state: job records and the per-queue heaps that order
them, with the moves every broker operation is made of. Not thread-safe:
the broker holds its lock around every call.

Per queue there is a heap of ready jobs (priority, then due time, then id), a
heap of scheduled jobs (due time) and a heap of leases (expiry). Heap entries
are never removed eagerly: each carries the job's version, and an entry whose
version is stale is skipped when it reaches the top.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from typing import Any

from taskmaster_core import ClaimedJob, JobInfo, JobState, NewJob, QueueStats

__all__ = ["FINISHED", "Queue", "Record", "Store", "dt", "info", "ready_head"]

_QUEUED, _RUNNING = JobState.QUEUED, JobState.RUNNING
_DONE, _FAILED = JobState.DONE, JobState.FAILED
FINISHED = frozenset({_DONE, _FAILED})


class Record:
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


class Queue:
    __slots__ = ("leased", "ready", "scheduled")

    def __init__(self) -> None:
        self.ready: list[tuple[int, float, int, int]] = []  # (-priority, run_at, id, version)
        self.scheduled: list[tuple[float, int, int]] = []  # (run_at, id, version)
        self.leased: list[tuple[float, int, int]] = []  # (lease_until, id, version)


class Store:
    """Every job of one memory broker, and its indexes."""

    def __init__(self) -> None:
        self.jobs: dict[int, Record] = {}
        self.queues: dict[str, Queue] = {}
        self.dedup: dict[tuple[str, str], int] = {}
        """(queue, dedup key) -> the unfinished job holding the key."""
        self.ids = itertools.count(1)
        self.tokens = itertools.count(1)

    def queue(self, name: str) -> Queue:
        queue = self.queues.get(name)
        if queue is None:
            queue = self.queues[name] = Queue()
        return queue

    def enqueue(self, record: Record, now: float) -> None:
        """Put a queued record on its ready or scheduled heap (version current)."""
        queue = self.queue(record.queue)
        if record.run_at <= now:
            heapq.heappush(
                queue.ready, (-record.priority, record.run_at, record.id, record.version)
            )
        else:
            heapq.heappush(queue.scheduled, (record.run_at, record.id, record.version))

    def transition(self, record: Record, state: JobState, now: float) -> None:
        record.state = state
        record.updated_at = now
        record.version += 1
        if state in FINISHED or state is _QUEUED:
            record.lease_until = None
            record.token = None
        if state in FINISHED and record.dedup_key is not None:
            key = (record.queue, record.dedup_key)
            # Only the job holding the key frees it: a finished job (being
            # deleted) may share its key with a newer, unfinished one.
            if self.dedup.get(key) == record.id:
                del self.dedup[key]

    def promote(self, queue: Queue, now: float) -> None:
        scheduled = queue.scheduled
        while scheduled and scheduled[0][0] <= now:
            _, job_id, version = heapq.heappop(scheduled)
            record = self.jobs.get(job_id)
            if record is not None and record.version == version:
                heapq.heappush(queue.ready, (-record.priority, record.run_at, job_id, version))

    def reclaim(self, queue: Queue, now: float) -> None:
        """Expired leases: back to queued, or failed when attempts are used up."""
        leased = queue.leased
        while leased and leased[0][0] <= now:
            _, job_id, version = heapq.heappop(leased)
            record = self.jobs.get(job_id)
            if record is None or record.version != version:
                continue
            if record.attempts >= record.max_attempts:
                record.last_error = (
                    f"worker lost: lease expired during attempt {record.attempts} "
                    f"of {record.max_attempts}"
                )
                self.transition(record, _FAILED, now)
            else:
                record.last_error = f"worker lost: lease expired during attempt {record.attempts}"
                self.transition(record, _QUEUED, now)
                self.enqueue(record, now)  # keeps its run_at: its place in line

    def lease(self, record: Record, until: float, now: float) -> None:
        """Hold ``record``'s lease until ``until``: a new version on the lease
        heap (the entry of the previous lease goes stale)."""
        record.lease_until = until
        record.updated_at = now
        record.version += 1
        heapq.heappush(self.queue(record.queue).leased, (until, record.id, record.version))

    def held(self, job_id: int, token: int) -> Record | None:
        record = self.jobs.get(job_id)
        if record is None or record.state is not _RUNNING or record.token != token:
            return None
        return record

    def select(
        self,
        *,
        ids: Collection[int] | None = None,
        queue: str | None = None,
        states: Collection[JobState] | None = None,
    ) -> list[Record]:
        """Records matching every given filter, by id. Caller holds the lock."""
        if ids is not None:
            candidates = [r for i in sorted(set(ids)) if (r := self.jobs.get(i)) is not None]
        else:
            candidates = sorted(self.jobs.values(), key=lambda r: r.id)
        wanted = None if states is None else {JobState(s) for s in states}
        return [
            r
            for r in candidates
            if (queue is None or r.queue == queue) and (wanted is None or r.state in wanted)
        ]

    def claim(
        self,
        queues: Sequence[str],
        limit: int,
        now: float,
        lease: float,
        paused: Collection[str] = (),
    ) -> list[ClaimedJob]:
        """The best ``limit`` ready jobs of ``queues`` but the ``paused`` ones
        (expired leases reclaimed first, paused queues' too), now running
        under fresh tokens."""
        claimed: list[ClaimedJob] = []
        heads: list[Queue] = []
        for name in dict.fromkeys(queues):
            queue = self.queues.get(name)
            if queue is None:
                continue
            self.reclaim(queue, now)
            self.promote(queue, now)
            if queue.ready and name not in paused:
                heads.append(queue)
        lease_until = now + lease
        jobs = self.jobs
        while heads and len(claimed) < limit:
            queue = heads[0] if len(heads) == 1 else min(heads, key=ready_head)
            _, _, job_id, version = heapq.heappop(queue.ready)
            if not queue.ready:
                heads.remove(queue)
            record = jobs.get(job_id)
            if record is None or record.version != version:
                continue  # stale entry
            token = next(self.tokens)
            record.state = _RUNNING
            record.attempts += 1
            record.token = token
            self.lease(record, lease_until, now)
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

    def stats(
        self, queues: Collection[str] | None, now: float, paused: Collection[str] = ()
    ) -> list[QueueStats]:
        """Counts per queue and state (named queues present even when empty,
        and paused ones, flagged)."""
        wanted = set(queues) if queues is not None else None
        counts: dict[str, dict[str, Any]] = {name: {} for name in wanted or ()}
        for name in paused:
            if wanted is None or name in wanted:
                counts.setdefault(name, {})["paused"] = True
        for record in self.jobs.values():
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


def ready_head(queue: Queue) -> tuple[int, float, int, int]:
    return queue.ready[0]


def info(record: Record) -> JobInfo:
    return JobInfo(
        id=record.id,
        queue=record.queue,
        state=record.state,
        payload=record.payload,
        serializer=record.serializer,
        priority=record.priority,
        attempts=record.attempts,
        max_attempts=record.max_attempts,
        run_at=dt(record.run_at),
        created_at=dt(record.created_at),
        updated_at=dt(record.updated_at),
        lease_until=None if record.lease_until is None else dt(record.lease_until),
        last_error=record.last_error,
        dedup_key=record.dedup_key,
        headers=dict(record.headers) if record.headers else None,
    )


def dt(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)
