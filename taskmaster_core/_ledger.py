"""The consumer's ledger: the state its threads share, behind one lock.

The fetcher, the workers, the settler and the lease keeper never share an
attribute: they change the consumer's state only through the methods here,
each of which holds the lock for its whole change. The ledger holds

- the **held** jobs (claimed, not yet settled), each with its lease and the
  time it runs out by our clock (a job is not started past it);
- the **pending** outcomes, waiting for the settler;
- the worker **slots** (what each worker thread is running, for the
  job-timeout watchdog);
- the **next due** time of a retry this consumer recorded, so the fetcher
  claims it on time instead of at the next poll;
- the measured handler time, which sizes the adaptive prefetch.

A worker takes the lock once per job (:meth:`Ledger.finish`); everything
else takes it once per batch.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence

from ._types import ClaimedJob, Lease, Settlement

__all__ = ["LATE", "Ledger", "Slot"]

LATE = -2
"""What :meth:`Ledger.finish` returns for an outcome that came after the
consumer stopped recording outcomes (it is dropped)."""

_INITIAL_JOB_SECONDS = 0.01
"""Handler time assumed before any was measured."""
_SMOOTHING = 0.05
"""Weight of the newest handler time in the running average."""


class Slot:
    """What one worker thread is running, for the job-timeout watchdog."""

    __slots__ = ("abandoned", "job", "started", "thread")

    def __init__(self) -> None:
        self.job: ClaimedJob | None = None
        self.started = 0.0
        self.abandoned = False
        self.thread: threading.Thread | None = None


class Ledger:
    """Held jobs, pending outcomes, worker slots, next due time, handler time."""

    def __init__(self, max_pending: int) -> None:
        self._lock = threading.Lock()
        self._outcome_ready = threading.Condition(self._lock)
        self._held: dict[int, tuple[Lease, float]] = {}
        self._pending: list[Settlement] = []
        self._slots: list[Slot] = []
        self._next_due: float | None = None
        self._closed = False
        self._max_pending = max_pending
        self._throttled = False
        self.job_seconds = _INITIAL_JOB_SECONDS
        """Seconds a handler takes, smoothed (read without the lock: a float)."""
        self.processed = 0
        """Outcomes the broker has recorded."""

    # -- held jobs -------------------------------------------------------------

    @property
    def held(self) -> int:
        """Jobs claimed and not yet settled (waiting or running)."""
        return len(self._held)

    def room(self) -> tuple[int, bool]:
        """Jobs held, and whether claiming should pause because too many
        outcomes wait for the broker (the settler wakes the fetcher after)."""
        with self._lock:
            self._throttled = len(self._pending) >= self._max_pending
            return len(self._held), self._throttled

    def hold(self, jobs: Sequence[ClaimedJob], deadline: float) -> None:
        """Record jobs just claimed, their leases running out at ``deadline``."""
        with self._lock:
            for job in jobs:
                self._held[job.id] = (Lease(job.id, job.token), deadline)

    def forget(self, jobs: Iterable[ClaimedJob]) -> None:
        """Drop jobs that go back unstarted (released, or their lease ran out)."""
        with self._lock:
            for job in jobs:
                self._held.pop(job.id, None)

    def deadline(self, job_id: int) -> float:
        """When a held job's lease runs out by our clock (0.0: not held)."""
        entry = self._held.get(job_id)  # one dict read: no lock needed
        return 0.0 if entry is None else entry[1]

    def leases(self) -> list[Lease]:
        with self._lock:
            return [lease for lease, _ in self._held.values()]

    def extended(self, leases: Sequence[Lease], lost: set[int], deadline: float) -> None:
        """Record a heartbeat: ``leases`` now run out at ``deadline``, except
        the ``lost`` ones, which must not be started any more."""
        with self._lock:
            held = self._held
            for lease in leases:
                entry = held.get(lease.id)
                if entry is not None and entry[0].token == lease.token:  # not a newer claim
                    held[lease.id] = (entry[0], 0.0 if lease.id in lost else deadline)

    # -- workers -----------------------------------------------------------------

    def add_slot(
        self, slot: Slot, start: Callable[[], threading.Thread], stopping: threading.Event
    ) -> bool:
        """Start ``slot``'s thread and register it, unless ``stopping`` is set.
        Atomic with :meth:`slots`: a stop that sets ``stopping`` and then
        counts the slots counts every worker that will ever run."""
        with self._lock:
            if stopping.is_set():
                return False
            slot.thread = start()
            self._slots.append(slot)
            return True

    def slots(self) -> list[Slot]:
        with self._lock:
            return list(self._slots)

    def finish(self, slot: Slot, job: ClaimedJob, settlement: Settlement, seconds: float) -> int:
        """Record a worker's outcome for ``job``, which took ``seconds``.
        Returns how many jobs are still held, or -1 if the watchdog gave the
        job up meanwhile (its outcome was settled then; this one is dropped),
        or :data:`LATE` if the consumer no longer records outcomes (its stop
        gave up on this handler; the outcome is dropped, the caller logs it)."""
        with self._lock:
            self.job_seconds += (seconds - self.job_seconds) * _SMOOTHING
            if slot.abandoned:
                return -1
            if self._closed:
                slot.job = None
                return LATE
            slot.job = None
            self._held.pop(job.id, None)
            pending = self._pending
            pending.append(settlement)
            if len(pending) == 1:
                self._outcome_ready.notify()
            return len(self._held)

    def take_overrun(
        self, limit: float, now: float, settle: Callable[[ClaimedJob], Settlement]
    ) -> list[tuple[ClaimedJob, Settlement]]:
        """Give up the jobs whose handler has run longer than ``limit``: their
        slots are abandoned (the late outcome is dropped by :meth:`finish`)
        and ``settle(job)`` is recorded in its place."""
        overran: list[tuple[ClaimedJob, Settlement]] = []
        with self._lock:
            for slot in list(self._slots):
                job = slot.job
                if job is None or now - slot.started <= limit:
                    continue
                slot.abandoned = True
                self._slots.remove(slot)
                self._held.pop(job.id, None)
                settlement = settle(job)
                self._pending.append(settlement)
                overran.append((job, settlement))
            if overran:
                self._outcome_ready.notify()
        return overran

    # -- outcomes ----------------------------------------------------------------

    def wait_for_outcomes(self) -> bool:
        """Block until an outcome is pending or no more will come; return
        whether no more will come (:meth:`close`)."""
        with self._lock:
            while not self._pending and not self._closed:
                self._outcome_ready.wait()
            return self._closed

    def take_outcomes(self) -> list[Settlement]:
        with self._lock:
            batch = self._pending
            self._pending = []
            return batch

    def has_outcomes(self) -> bool:
        with self._lock:
            return bool(self._pending)

    def recorded(self, count: int) -> bool:
        """The broker recorded ``count`` outcomes; return whether the fetcher
        had paused claiming for them (and should be woken)."""
        with self._lock:
            self.processed += count
            return self._throttled

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (one bool read: no lock needed)."""
        return self._closed

    def close(self) -> None:
        """No more outcomes will come: the settler flushes what is left and ends."""
        with self._lock:
            self._closed = True
            self._outcome_ready.notify()

    def idle(self) -> bool:
        """Nothing held and no outcome waiting to be recorded."""
        with self._lock:
            return not self._held and not self._pending

    # -- next due retry ------------------------------------------------------------

    def note_due(self, due: float) -> bool:
        """A retry falls due at ``due``; return whether that is sooner than the
        one noted so far (then the fetcher should be woken to shorten its wait)."""
        with self._lock:
            if self._next_due is None or due < self._next_due:
                self._next_due = due
                return True
            return False

    def idle_timeout(self, poll_interval: float, now: float) -> float:
        """How long the fetcher may wait: ``poll_interval``, or less if a noted
        retry falls due sooner (that due time is then consumed)."""
        with self._lock:
            due = self._next_due
            if due is None or due - now > poll_interval:
                return poll_interval
            self._next_due = None
            return max(0.0, due - now)
