"""The worker threads: each takes the next claimed job off the workers'
queue, starts it unless its lease ran out while it waited, runs it (see
``_runner``) and records the outcome in the ledger.

A stop sentinel (``None``) ends a worker; a worker that finds the consumer
stopping puts its job back for ``stop()`` to return. The job-timeout
watchdog (``_lease_keeper``) abandons a stuck worker and asks for a new one
(:meth:`Workers.add`).
"""

from __future__ import annotations

import itertools
import logging
import queue as _queue
import threading
import time
from collections.abc import Callable

from ._fetcher import Fetcher
from ._ledger import Ledger, Slot
from ._runner import Runner, log_outcome
from ._types import ClaimedJob

__all__ = ["Workers"]

logger = logging.getLogger("taskmaster.consumer")

Spawn = Callable[[str, Callable[[], None]], threading.Thread]
"""Starts a supervised role thread: ``spawn(role, target)``."""


class Workers:
    """Starts worker threads and runs their loop."""

    def __init__(
        self,
        name: str,
        ledger: Ledger,
        runner: Runner,
        fetcher: Fetcher,
        work: _queue.SimpleQueue[ClaimedJob | None],
        stopping: threading.Event,
        spawn: Spawn,
    ) -> None:
        self.name = name
        self._ledger = ledger
        self._runner = runner
        self._fetcher = fetcher
        self._work = work
        self._stopping = stopping
        self._spawn = spawn
        self._numbers = itertools.count(1)

    def add(self) -> None:
        """Start one more worker thread (at start, and to replace a stuck one),
        unless the consumer is stopping: ``stop()`` sends one stop sentinel
        per worker it counted, and a worker started after that count would
        take another's sentinel."""
        slot = Slot()
        number = next(self._numbers)
        self._ledger.add_slot(
            slot,
            lambda: self._spawn(f"worker-{number}", lambda: self.loop(slot)),
            self._stopping,
        )

    def threads(self) -> list[threading.Thread]:
        """The worker threads not abandoned by the watchdog."""
        return [slot.thread for slot in self._ledger.slots() if slot.thread is not None]

    def loop(self, slot: Slot) -> None:
        """Run jobs until a stop sentinel, or until the watchdog abandons us."""
        work = self._work
        ledger = self._ledger
        run = self._runner.run
        fetcher = self._fetcher
        clock = time.perf_counter
        while True:
            claimed = work.get()
            if claimed is None:
                return
            if self._stopping.is_set():
                work.put(claimed)  # not started: stop() returns it to the queue
                return
            now = time.monotonic()
            if ledger.deadline(claimed.id) <= now:
                self._give_up(claimed)
                continue
            slot.started = now
            slot.job = claimed
            began = clock()
            settlement, error, level = run(claimed)
            held = ledger.finish(slot, claimed, settlement, clock() - began)
            if held < 0:
                return  # timed out: the watchdog settled (and logged) the job, replaced us
            if held == fetcher.refill_level:
                fetcher.wake.set()
            if level:
                log_outcome(level, claimed, settlement, error)

    def _give_up(self, claimed: ClaimedJob) -> None:
        """A waiting job whose lease ran out (this process was frozen, or the
        heartbeat failed) may already be someone else's: do not start it.
        Hand it back (refused if it was reclaimed meanwhile)."""
        logger.warning(
            "%s: not starting job %s on queue %s: its lease ran out while it waited",
            self.name,
            claimed.id,
            claimed.queue,
        )
        self._fetcher.release([claimed])
