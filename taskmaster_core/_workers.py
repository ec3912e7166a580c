"""The worker threads: each takes the next claimed job off the workers'
queue, starts it unless its lease ran out while it waited, runs it (see
``_runner``) and records the outcome in the ledger.

A stop sentinel (``None``) ends a worker; a worker that finds the consumer
stopping puts its job back for ``stop()`` to return. The job-timeout
watchdog (``_lease_keeper``) abandons a stuck worker and asks for a new one
(:meth:`Workers.add`).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import itertools
import logging
import queue as _queue
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from ._fetcher import Fetcher
from ._ledger import LATE, Ledger, Slot
from ._runner import Runner, log_outcome
from ._types import ClaimedJob

__all__ = ["LATE_NOTE", "Workers", "in_own_thread", "join_until", "remaining", "wait_until"]

LATE_NOTE = (
    "; but the consumer had stopped recording outcomes (the handler outlived the stop), "
    "so this one is dropped: the job runs again when its lease expires"
)

logger = logging.getLogger("taskmaster.consumer")

T = TypeVar("T")

_JOIN_SLICE = 0.05
"""How often a stopping consumer checks for ``hurry()`` while it waits."""

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
        concurrency: int,
    ) -> None:
        self.name = name
        self._concurrency = concurrency
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

    def launch(self) -> None:
        """Start ``concurrency`` worker threads."""
        for _ in range(self._concurrency):
            self.add()

    def finish(self, deadline: float | None, hurry: threading.Event) -> list[str]:
        """Stop the workers (one stop sentinel each) and wait for their
        running handlers until ``deadline`` or ``hurry``; return the names
        of the threads still running one."""
        slots = [slot for slot in self._ledger.slots() if slot.thread is not None]
        for _ in slots:
            self._work.put(None)
        for slot in slots:
            join_until(slot.thread, deadline, hurry)  # type: ignore[arg-type]
        # Hurried, a thread may not have taken its sentinel yet: only one
        # running a job is busy (an idle one ends on its sentinel).
        return [
            slot.thread.name
            for slot in slots
            if slot.thread is not None and slot.thread.is_alive() and slot.job is not None
        ]

    def on_loop_thread(self) -> bool:
        """Worker threads have no event loop (see ``AsyncWorkers``)."""
        return False

    def alive(self) -> int:
        """Worker threads alive and not abandoned."""
        return sum(thread.is_alive() for thread in self.threads())

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
                fetcher.give_up(claimed)
                continue
            slot.started = now
            slot.job = claimed
            began = clock()
            settlement, error, level = run(claimed)
            held = ledger.finish(slot, claimed, settlement, clock() - began)
            if held == LATE:
                log_outcome(logging.WARNING, claimed, settlement, error, LATE_NOTE)
                return
            if held < 0:
                return  # timed out: the watchdog settled (and logged) the job, replaced us
            if held == fetcher.refill_level:
                fetcher.wake.set()
            if level:
                log_outcome(level, claimed, settlement, error)


def join_until(thread: threading.Thread, deadline: float | None, hurry: threading.Event) -> None:
    """Wait for ``thread`` to end, until ``deadline`` or until ``hurry`` is set."""
    _wait(lambda: not thread.is_alive(), thread.join, deadline, hurry)


def wait_until(done: threading.Event, deadline: float | None, hurry: threading.Event) -> bool:
    """Wait for ``done``, until ``deadline`` or ``hurry``; return whether it is set."""
    _wait(done.is_set, done.wait, deadline, hurry)
    return done.is_set()


def _wait(
    over: Callable[[], bool],
    wait: Callable[[float], object],
    deadline: float | None,
    hurry: threading.Event,
) -> None:
    while not over() and not hurry.is_set():
        left = remaining(deadline)
        if left is not None and left <= 0:
            return
        wait(_JOIN_SLICE if left is None else min(_JOIN_SLICE, left))


def remaining(deadline: float | None, minimum: float = 0.0) -> float | None:
    """Seconds to ``deadline`` (monotonic), at least ``minimum``; ``None``: no deadline."""
    if deadline is None:
        return None
    return max(minimum, deadline - time.monotonic())


async def in_own_thread(function: Callable[..., T], *args: Any, finish: bool = False) -> T:
    """``function(*args)`` on a thread of its own, awaited. Not
    ``asyncio.to_thread``: the loop's default executor is shared with the
    handlers' own ``to_thread`` calls, and a consumer's stop must not queue
    behind them (it would wait while the fetcher kept claiming). With
    ``finish`` the thread is not a daemon: if the awaiting task is cancelled
    (Ctrl-C while leaving ``async with consumer``) and the interpreter
    exits, it waits for the call to end — a stop that flushes outcomes."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()
    context = contextvars.copy_context()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():
            return  # the awaiting task was cancelled
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def call() -> None:
        try:
            result = context.run(function, *args)
        except BaseException as exc:
            error: BaseException | None = exc
            result = None
        else:
            error = None
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(
        target=call, name=f"taskmaster-{getattr(function, '__name__', 'call')}", daemon=not finish
    ).start()
    return await future
