"""The fetcher: claims jobs in batches sized to the free slots and feeds
them to the workers' queue.

It holds ``concurrency`` running + ``prefetch`` waiting jobs. By default
``prefetch`` adapts to the jobs: enough to keep the workers busy for about
0.1 s at the handler time measured so far (so fast jobs come hundreds to a
claim and slow ones one at a time). It claims again once the held jobs fall
to half of that, and sleeps until the broker signals new work, a slot frees
up, a local retry falls due, or ``poll_interval`` passes — so a lost
notification only delays a job. It pauses while too many outcomes wait for
the broker. A ``TaskmasterError`` from the broker (it is down) is retried
with backoff; any other exception ends the fetcher, and the consumer with it.
"""

from __future__ import annotations

import logging
import queue as _queue
import threading
import time
from collections.abc import Sequence
from typing import Protocol

from ._broker import Broker
from ._errors import TaskmasterError
from ._ledger import Ledger
from ._types import ClaimedJob, Lease

__all__ = ["MAX_BACKOFF", "Fetcher", "WorkQueue", "max_pending"]

logger = logging.getLogger("taskmaster.consumer")

_MAX_CLAIM = 500
"""Largest batch one claim asks for."""
_MAX_PREFETCH = 500
"""Most jobs the adaptive prefetch holds waiting."""
_PREFETCH_WINDOW = 0.1
"""The adaptive prefetch holds about this many seconds of work per worker."""
MAX_BACKOFF = 5.0
"""Cap on the wait between attempts to reach a failing broker."""


class WorkQueue(Protocol):
    """Where the fetcher puts claimed jobs for the workers: a
    ``queue.SimpleQueue`` for worker threads, an ``Inbox`` for an event loop
    (``_async_workers``). ``get_nowait`` raises ``queue.Empty`` when empty."""

    def put(self, item: ClaimedJob | None) -> None: ...

    def get_nowait(self) -> ClaimedJob | None: ...


def max_pending(concurrency: int) -> int:
    """Outcomes waiting for the broker at which claiming pauses."""
    return max(1024, 8 * (concurrency + _MAX_PREFETCH))


class Fetcher:
    """Claims jobs for the workers (see the module docstring)."""

    def __init__(
        self,
        name: str,
        broker: Broker,
        queues: Sequence[str],
        *,
        concurrency: int,
        prefetch: int | None,
        lease: float,
        poll_interval: float,
        ledger: Ledger,
        work: WorkQueue,
        stopping: threading.Event,
    ) -> None:
        self.name = name
        self._broker = broker
        self._queues = queues
        self._concurrency = concurrency
        self._prefetch = prefetch
        self._lease = lease
        self._poll_interval = poll_interval
        self._ledger = ledger
        self._work = work
        self._stopping = stopping
        self.wake = threading.Event()
        """Set to end the fetcher's wait: new work, a freed slot, a retry due."""
        self._capacity = 0
        self.refill_level = 0
        """Held jobs at or below which the fetcher claims again (workers wake it there)."""
        self._resize()

    def on_signal(self, queue: str | None) -> None:
        """The broker's wake-up callback."""
        self.wake.set()

    def _resize(self) -> None:
        """Set how many jobs to hold (running + waiting), and the level at or
        below which to claim again (half of it)."""
        prefetch = self._prefetch
        if prefetch is None:
            per_worker = _PREFETCH_WINDOW / max(self._ledger.job_seconds, 1e-6)
            prefetch = min(_MAX_PREFETCH, int(self._concurrency * per_worker))
        self._capacity = self._concurrency + prefetch
        self.refill_level = self._capacity // 2

    def run(self) -> None:
        failures = 0
        ledger = self._ledger
        while not self._stopping.is_set():
            # Clear before looking, so a signal that arrives meanwhile is kept.
            self.wake.clear()
            self._resize()
            held, throttled = ledger.room()
            if held <= self.refill_level and not throttled:
                want = min(self._capacity - held, _MAX_CLAIM)
                deadline = time.monotonic() + self._lease  # taken before: errs early
                try:
                    claimed = self._broker.claim(self._queues, want, self._lease)
                except TaskmasterError as exc:
                    failures += 1
                    delay = min(MAX_BACKOFF, self._poll_interval, 0.05 * 2**failures)
                    logger.warning(
                        "%s: claim failed (%s); retrying in %.2fs", self.name, exc, delay
                    )
                    self.wake.wait(delay)
                    continue
                failures = 0
                if claimed and self._stopping.is_set():
                    self.release(claimed)  # stop() began during the claim
                    return
                if claimed:
                    ledger.hold(claimed, deadline)
                    for job in claimed:
                        self._work.put(job)
                if len(claimed) == want:
                    continue  # probably more waiting: claim again once slots free up
            # Wait for a broker signal, a freed slot (workers signal at the
            # refill level), a local retry falling due, or the poll interval.
            self.wake.wait(ledger.idle_timeout(self._poll_interval, time.monotonic()))

    def return_unstarted(self) -> None:
        """Release every job still waiting in the workers' queue."""
        unstarted: list[ClaimedJob] = []
        while True:
            try:
                item = self._work.get_nowait()
            except _queue.Empty:
                break
            if item is not None:
                unstarted.append(item)
        self.release(unstarted)

    def give_up(self, claimed: ClaimedJob) -> None:
        """A waiting job whose lease ran out (this process was frozen, or the
        heartbeat failed) may already be someone else's: it is not started
        but handed back (refused if it was reclaimed meanwhile)."""
        logger.warning(
            "%s: not starting job %s on queue %s: its lease ran out while it waited",
            self.name,
            claimed.id,
            claimed.queue,
        )
        self.release([claimed])

    def release(self, unstarted: list[ClaimedJob]) -> None:
        """Hand claimed-but-unstarted jobs back to the broker (best effort:
        one it refuses, or cannot take, comes back when its lease expires)."""
        if not unstarted:
            return
        self._ledger.forget(unstarted)
        try:
            self._broker.release([Lease(job.id, job.token) for job in unstarted])
        except Exception:
            logger.exception(
                "%s: could not return %d unstarted jobs; they run again when their lease expires",
                self.name,
                len(unstarted),
            )
