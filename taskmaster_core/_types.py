"""The records that travel between core and brokers.

Brokers only ever see bytes: the payload is encoded by the publisher and
decoded by the consumer, so every broker stores exactly what a real backend
would. Times that cross this boundary are epoch seconds (``float``) on the hot
path (claims) and aware ``datetime`` objects in inspection results.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Literal

import msgspec

__all__ = [
    "ClaimedJob",
    "JobInfo",
    "JobState",
    "Lease",
    "NewJob",
    "QueueStats",
    "Settlement",
]


class JobState(enum.StrEnum):
    """Where a job is in its life (see docs/concepts.md)."""

    QUEUED = "queued"
    """Waiting: ready now, or scheduled when ``run_at`` is in the future."""
    RUNNING = "running"
    """Claimed by a worker that holds a lease on it."""
    DONE = "done"
    """Acknowledged (kept only in keep-done mode; otherwise acked jobs are deleted)."""
    FAILED = "failed"
    """Rejected, or out of attempts; kept with its last error for inspection and requeue."""


class NewJob(msgspec.Struct, frozen=True, kw_only=True):
    """A job to store: what a publisher hands to ``Broker.put``."""

    queue: str
    payload: bytes
    serializer: str
    priority: int = 0
    delay: float = 0.0
    """Seconds from now (the broker's clock) until the job is due; ignored if run_at is set."""
    run_at: float | None = None
    """Absolute due time in epoch seconds; ``None`` means now + delay."""
    max_attempts: int = 3
    dedup_key: str | None = None
    headers: dict[str, str] | None = None


class ClaimedJob(msgspec.Struct, frozen=True, kw_only=True):
    """A job a worker has claimed, with the token that fences its outcome."""

    id: int
    queue: str
    payload: bytes
    serializer: str
    priority: int
    attempt: int
    """This run's number, from 1 (attempts so far, this one included)."""
    max_attempts: int
    run_at: float
    created_at: float
    headers: dict[str, str] | None
    token: int
    """Claim token: an outcome or lease extension is accepted only with the current token."""


class Lease(msgspec.Struct, frozen=True, array_like=True):
    """A job id with the claim token it was claimed under."""

    id: int
    token: int


SettleKind = Literal["ack", "fail", "retry"]


class Settlement(msgspec.Struct, frozen=True, kw_only=True):
    """The outcome of one claimed job, as sent back to the broker in batches.

    ``ack``: delete the job (or mark it done in keep-done mode).
    ``fail``: mark it failed with ``error``.
    ``retry``: queue it again ``delay`` seconds from now, recording ``error``.
    """

    id: int
    token: int
    kind: SettleKind
    error: str | None = None
    delay: float = 0.0


class JobInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A stored job as inspection sees it (``Broker.jobs``)."""

    id: int
    queue: str
    state: JobState
    payload: bytes
    serializer: str
    priority: int
    attempts: int
    max_attempts: int
    run_at: datetime
    created_at: datetime
    updated_at: datetime
    lease_until: datetime | None
    last_error: str | None
    dedup_key: str | None
    headers: dict[str, str] | None


class QueueStats(msgspec.Struct, frozen=True, kw_only=True):
    """Job counts of one queue by state, as ``Broker.stats`` reports them."""

    queue: str
    ready: int = 0
    """Queued and due now."""
    scheduled: int = 0
    """Queued with ``run_at`` in the future."""
    running: int = 0
    failed: int = 0
    done: int = 0
    oldest_ready_age: float | None = None
    """Seconds since the oldest ready job became due, or None if none is ready."""
    paused: bool = False
    """The queue is paused: its jobs are not claimed (see ``PausesQueues``).
    A paused queue is listed even when it has no jobs."""

    @property
    def queued(self) -> int:
        return self.ready + self.scheduled

    @property
    def unfinished(self) -> int:
        """Jobs still to run: queued (ready or scheduled) and running."""
        return self.ready + self.scheduled + self.running
