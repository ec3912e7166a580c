"""The broker protocol: the storage side of Taskmaster.

A broker stores encoded jobs and moves them through the state machine of
docs/concepts.md. It is deliberately small: retry policy, serialization and
middleware live in core, once. Every method is thread-safe.

Implementers can subclass :class:`BrokerBase` for the context-manager
plumbing; the contract suite in ``taskmaster_core.testing`` states the behaviour.

Optional abilities are declared, never guessed from attribute names:

- An ability that adds methods is a runtime-checkable protocol; implementing
  its methods declares it, and ``isinstance`` checks it:
  :class:`PlansMigrations` (``migration_sql()``, for ``migrate --dry-run``),
  :class:`AsyncTransactionalPut` (``put_async(jobs, connection=...)``, for
  ``AsyncPublisher(...).put(..., connection=...)``).
- An ability that changes what a protocol method does is a
  :class:`Capability` in the broker's ``capabilities`` (a frozenset,
  class-level or per instance; :class:`BrokerBase` declares none), read with
  :func:`capabilities_of`: ``TRANSACTIONAL_PUT`` (``put(connection=...)``
  joins the caller's transaction; without it, a connection is refused with
  ``ConfigurationError``), ``WAKE_UPS`` (``subscribe()`` calls back when
  jobs arrive; without it, consumers find work by polling).

Brokers raise the typed ``BrokerError`` subclasses of ``_errors``
(unavailable, schema missing, permission denied, configuration), each
translated from the driver's exceptions in one mapping of the broker's.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Collection, Sequence
from types import TracebackType
from typing import Any, Protocol, Self, runtime_checkable

from ._errors import ConfigurationError
from ._types import ClaimedJob, JobInfo, JobState, Lease, NewJob, QueueStats, Settlement

__all__ = [
    "AsyncTransactionalPut",
    "Broker",
    "BrokerBase",
    "Capability",
    "PlansMigrations",
    "Subscription",
    "WakeCallback",
    "capabilities_of",
]

WakeCallback = Callable[[str | None], None]
"""Called with a queue name when jobs may be ready on it, or ``None`` for "any
queue" (after a reconnect, when notifications may have been missed). It runs
on the broker's notification thread and must return quickly."""


@runtime_checkable
class Subscription(Protocol):
    def close(self) -> None:
        """Stop delivering wake-ups to this subscription's callback."""


@runtime_checkable
class Broker(Protocol):
    """Where jobs live. See the module docstring and docs/concepts.md."""

    def open(self) -> None:
        """Acquire resources (connections, threads). Idempotent."""

    def close(self) -> None:
        """Release every resource. Idempotent."""

    def migrate(self) -> None:
        """Create or upgrade the storage schema. Idempotent and safe to race."""

    def put(self, jobs: Sequence[NewJob], *, connection: Any = None) -> list[int | None]:
        """Store jobs; return their ids in order, ``None`` where an unfinished job
        (queued or running) with the same queue and dedup key already exists.

        ``connection`` is a backend connection of the caller's (e.g. a database
        connection inside the caller's transaction), for brokers with
        ``Capability.TRANSACTIONAL_PUT``; the others raise
        ``ConfigurationError`` if it is given."""

    def claim(self, queues: Sequence[str], limit: int, lease: float) -> list[ClaimedJob]:
        """Claim up to ``limit`` ready jobs of ``queues``, highest priority first,
        then earliest ``run_at``, then oldest id. Each claimed job is ``running``,
        its attempts incremented, leased for ``lease`` seconds under a new token.

        Jobs of ``queues`` whose lease expired are reclaimed first: back to
        ``queued`` keeping their ``run_at`` (and claimable by this very call),
        or ``failed`` with a "worker lost" error when their attempts are used up."""

    def settle(self, settlements: Sequence[Settlement]) -> list[int]:
        """Apply outcomes in one batch, each fenced on its claim token; return the
        ids whose outcome was refused (the job was reclaimed, deleted or settled
        since). A retry's attempts are kept: it counts as an attempt."""

    def extend(self, leases: Sequence[Lease], lease: float) -> list[int]:
        """Extend running jobs' leases to ``lease`` seconds from now; return the
        ids refused (no longer held under that token)."""

    def release(self, leases: Sequence[Lease]) -> int:
        """Return claimed-but-unstarted jobs to ``queued``, keeping their place in
        line (``run_at`` unchanged) and undoing the claim's attempt. Fenced;
        returns how many were released. Wakes consumers."""

    def requeue(self, *, ids: Collection[int] | None = None, queue: str | None = None) -> int:
        """Move failed jobs (the given ids, or all of ``queue``, or all) back to
        ``queued`` with attempts reset, due now, and wake consumers. Returns the
        count moved; ids that are not failed are left alone, and so is a failed
        job whose dedup key is held by another unfinished job."""

    def delete(
        self,
        *,
        ids: Collection[int] | None = None,
        queue: str | None = None,
        states: Collection[JobState] | None = None,
        limit: int | None = None,
    ) -> int:
        """Delete jobs matching every given filter (no filter: every job).
        Returns the count. With ``limit``, at most that many (any of the
        matching ones): a large set goes in short transactions by calling
        again until a call deletes nothing (a short batch is no proof that
        none remain: jobs it picked may have changed meanwhile)."""

    def prune(
        self,
        older_than: float,
        *,
        states: Collection[JobState] = (JobState.DONE,),
        queue: str | None = None,
        limit: int | None = None,
    ) -> int:
        """Delete finished jobs (``done``/``failed`` only) last updated more than
        ``older_than`` seconds ago. Returns the count; ``limit`` as for
        :meth:`delete`."""

    def stats(self, queues: Collection[str] | None = None) -> list[QueueStats]:
        """Counts per queue and state, sorted by queue name. Queues with no
        jobs are absent unless named in ``queues``."""

    def jobs(
        self,
        *,
        ids: Collection[int] | None = None,
        queue: str | None = None,
        states: Collection[JobState] | None = None,
        limit: int = 100,
        after_id: int | None = None,
    ) -> list[JobInfo]:
        """Inspect stored jobs matching every given filter, by ascending id."""

    def subscribe(self, queues: Collection[str], callback: WakeCallback) -> Subscription:
        """Call ``callback`` when jobs may have become ready on one of ``queues``
        (put, requeue, release)."""

    def __enter__(self) -> Self:
        """``open()`` and return the broker."""

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """``close()``."""


class Capability(enum.StrEnum):
    """What a broker's protocol methods can do beyond the minimum; declared in
    the broker's ``capabilities`` (see the module docstring)."""

    TRANSACTIONAL_PUT = "transactional-put"
    """``put(connection=...)`` stores the jobs inside the caller's transaction."""
    WAKE_UPS = "wake-ups"
    """``subscribe()`` calls back when jobs may be ready (else: polling only)."""
    PAUSE = "pause"
    """Queues can be paused and resumed (:class:`PausesQueues`), and the
    pause is stored in the broker, for every worker."""


@runtime_checkable
class _DeclaresCapabilities(Protocol):
    capabilities: frozenset[Capability]


def capabilities_of(broker: Broker) -> frozenset[Capability]:
    """The capabilities ``broker`` declares (none, if it declares nothing)."""
    if isinstance(broker, _DeclaresCapabilities):
        return frozenset(broker.capabilities)
    return frozenset()


@runtime_checkable
class PlansMigrations(Protocol):
    """A broker that can show what ``migrate()`` would do, without doing it."""

    def migration_sql(self) -> list[str]:
        """The statements ``migrate()`` would run now, as text (empty when the
        storage is up to date); changes nothing."""


@runtime_checkable
class PausesQueues(Protocol):
    """A broker that can pause queues: no job of a paused queue is claimed, by
    any worker using the broker's storage, until it is resumed. Jobs can
    still be put on it; jobs already running finish and settle as usual.
    Declared with :attr:`Capability.PAUSE`."""

    def pause(self, queues: Sequence[str]) -> None:
        """Pause ``queues`` (pausing a paused queue changes nothing). A name no
        job could carry raises ``ConfigurationError``."""

    def resume(self, queues: Sequence[str]) -> None:
        """Resume ``queues`` and wake their consumers (resuming a queue that
        is not paused changes nothing)."""

    def paused(self) -> list[str]:
        """The paused queues, sorted."""


@runtime_checkable
class AsyncTransactionalPut(Protocol):
    """A broker that puts natively from asyncio code: on the caller's own
    *async* connection, awaited, inside the caller's transaction
    (``AsyncPublisher`` with ``connection=``), and on its own async
    connection without one. Without it, an ``AsyncPublisher`` runs the sync
    ``put`` in a worker thread, and one given a connection raises
    ``ConfigurationError``."""

    async def put_async(
        self, jobs: Sequence[NewJob], *, connection: Any = None
    ) -> list[int | None]:
        """:meth:`Broker.put`, awaited on the event loop, never blocking it:
        the same result and the same transaction rules (never commit, roll
        back or end a transaction it did not begin). ``connection=None``:
        the broker's own. A connection of the wrong kind raises
        ``ConfigurationError``."""


class BrokerBase:
    """Optional base class: context-manager use over ``open()``/``close()``,
    and checks every broker needs."""

    capabilities: frozenset[Capability] = frozenset()
    """None by default; a subclass declares its own (see :class:`Capability`)."""

    @staticmethod
    def _prune_states(states: Collection[JobState]) -> frozenset[JobState]:
        """``states`` as JobStates, refusing any but done and failed."""
        wanted = frozenset(JobState(s) for s in states)
        unfinished = wanted - {JobState.DONE, JobState.FAILED}
        if unfinished:
            raise ConfigurationError(
                "prune removes finished jobs only (done, failed), not "
                + ", ".join(sorted(unfinished))
            )
        return wanted

    @staticmethod
    def _check_limit(limit: int | None) -> int | None:
        """``limit`` of delete/prune: ``None`` (no limit) or an int >= 1."""
        if limit is not None and (
            not isinstance(limit, int) or isinstance(limit, bool) or limit < 1
        ):
            raise ConfigurationError(f"limit must be None or an int >= 1, got {limit!r}")
        return limit

    def open(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def close(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
