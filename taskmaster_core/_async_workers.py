"""Async handlers: the consumer's workers as asyncio tasks on one event loop.

An async consumer (its handler is ``async def``) keeps the fetcher, the
settler and the lease keeper of a sync one — the same threads, the same
batched broker calls, off the loop — and replaces only the worker threads:
``concurrency`` long-lived worker tasks on an event loop run the jobs, one
after another each, so 1,000 jobs in flight are 1,000 suspended
coroutines, not 1,000 threads. The loop is the application's own (``async
with consumer``, ``await consumer.start_async()``) or, under
``start()``/``with`` and ``taskmaster worker``, one the consumer runs on a
thread of its own.

The fetcher hands jobs over through an :class:`Inbox`: it appends them from
its thread and wakes the loop once per batch (``call_soon_threadsafe``),
which wakes idle workers a few at a time (each woken one wakes two more).
A worker takes the next job itself when it is done with one: jobs that do
not wait run back to back, within one budget of ``_STEP_SECONDS`` per turn
of the loop shared by all workers. Each job's outcome goes to the ledger as
a worker thread's does (one lock, held briefly). Nothing on the loop waits
for the broker. Each job runs in a copy of the context (``in_context``).

``job_timeout`` is enforced on the loop (``asyncio.timeout``): an overrunning
handler is cancelled (it sees ``CancelledError``) and the job is retried per
policy. A stop lets running handlers finish until its deadline (or
``hurry()``), then cancels the workers: those jobs are retried at once (the
run counts as an attempt, like a timeout); a handler that ignores the
cancellation gets ``_CANCEL_GRACE`` more seconds, then is left to its lease.
"""

from __future__ import annotations

import asyncio
import logging
import queue as _queue
import threading
import time
from collections import deque
from collections.abc import Callable

from ._fetcher import Fetcher
from ._ledger import LATE, Ledger, Slot
from ._runner import Run, Runner, log_outcome
from ._types import ClaimedJob
from ._workers import LATE_NOTE, in_own_thread, wait_until

__all__ = ["AsyncWorkers", "Inbox"]

logger = logging.getLogger("taskmaster.consumer")

_CANCEL_GRACE = 5.0
"""Seconds a stop waits for cancelled handlers to unwind."""

_STARTS_PER_STEP = 16
"""Most worker tasks started in one step of the loop."""

_WAKES_PER_STEP = 32
"""Most idle workers woken in one callback when jobs come."""

_STEP_SECONDS = 0.002
"""How long the workers run jobs that do not wait, in one turn of the loop,
before they let it poll I/O and fire timers."""


class Inbox:
    """Claimed jobs on their way from the fetcher's thread to the loop."""

    def __init__(self) -> None:
        self._jobs: deque[ClaimedJob] = deque()  # append and popleft are atomic
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: Callable[[], None] = _nothing
        self._signalled = False

    def attach(self, loop: asyncio.AbstractEventLoop, wake: Callable[[], None]) -> None:
        """From now on, wake ``loop`` by calling ``wake`` on it when jobs come."""
        self._wake = wake
        self._loop = loop

    def detach(self) -> None:
        self._loop = None

    def put(self, item: ClaimedJob | None) -> None:
        """Add a job (from any thread); wakes the loop unless a wake-up is
        already on its way (one per batch, not one per job)."""
        if item is None:
            return  # stop sentinels are for worker threads
        self._jobs.append(item)
        loop = self._loop
        if self._signalled or loop is None:
            return
        self._signalled = True
        try:
            loop.call_soon_threadsafe(self._woken)
        except RuntimeError:  # the loop closed: stop() returns the jobs
            self._signalled = False

    def _woken(self) -> None:
        self._signalled = False  # before the jobs are taken: a later put signals again
        self._wake()

    def waiting(self) -> int:
        return len(self._jobs)

    def take(self) -> ClaimedJob | None:
        """The next job, or ``None``."""
        try:
            return self._jobs.popleft()
        except IndexError:
            return None

    def get_nowait(self) -> ClaimedJob | None:
        """The next job (for ``stop()`` returning unstarted jobs)."""
        job = self.take()
        if job is None:
            raise _queue.Empty
        return job


def _nothing() -> None:
    pass


class AsyncWorkers:
    """Runs claimed jobs as tasks on an event loop (see the module docstring)."""

    def __init__(
        self,
        name: str,
        ledger: Ledger,
        runner: Runner,
        fetcher: Fetcher,
        inbox: Inbox,
        stopping: threading.Event,
        concurrency: int,
        spawn: Callable[[str, Callable[[], None]], threading.Thread],
        failed: Callable[..., None],
    ) -> None:
        self.name = name
        self._ledger = ledger
        self._runner = runner
        self._fetcher = fetcher
        self._inbox = inbox
        self._stopping = stopping
        self._concurrency = concurrency
        self._spawn = spawn
        self._failed = failed
        self._tasks: set[asyncio.Task[None]] = set()
        """The worker tasks."""
        self._idle: deque[asyncio.Future[None]] = deque()
        """Futures of workers waiting for jobs, woken in order."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup: asyncio.Event | None = None
        self._launched = False
        self._done = threading.Event()
        """Set when :meth:`serve` has ended (every task it started has too)."""
        self.cancelled = 0
        """Handlers cancelled because the consumer stopped."""
        self._cancelling_all = False
        """Set when a stop cancels the workers (``_cancel_all``)."""
        self._turn_ends: float | None = None
        """When this turn of the loop's budget for running jobs ends."""
        self._slot = Slot()
        """The ledger's slot for this consumer's async jobs: the watchdog of
        threads is not used (timeouts are enforced on the loop)."""

    # -- on the consumer's side (any thread) -------------------------------

    def launch(self) -> None:
        """Serve on an event loop of the consumer's own, on its own thread."""
        self._launched = True
        self._spawn("event-loop", lambda: asyncio.run(self.serve()))

    def launch_on(self, loop: asyncio.AbstractEventLoop) -> None:
        """Serve on ``loop``, the caller's running loop (called on it)."""
        self._launched = True
        task = loop.create_task(self.serve(), name=f"{self.name}-event-loop")
        task.add_done_callback(self._served)

    def on_loop_thread(self) -> bool:
        """Whether the caller runs on the loop serving the handlers (where a
        blocking ``stop()`` would wait for tasks that cannot run)."""
        try:
            return asyncio.get_running_loop() is self._loop
        except RuntimeError:
            return False

    def finish(self, deadline: float | None, hurry: threading.Event) -> list[str]:
        """Stop starting jobs and wait for the running ones until ``deadline``
        or ``hurry``; then cancel their tasks (their jobs are retried) and
        wait a little for them to unwind. Returns the jobs still running."""
        if not self._launched:
            return []
        self._call_soon(_nothing)  # serve() sees the stop
        if not wait_until(self._done, deadline, hurry):
            self._call_soon(self._cancel_all)
            self._done.wait(_CANCEL_GRACE)
        if self._done.is_set():
            return []
        return [task.get_name() for task in list(self._tasks)]

    def _loop_gone(self) -> None:
        """The loop was closed without ending ``serve()`` (its tasks were
        never cancelled): nothing will run on it any more."""
        self._done.set()

    def alive(self) -> int:
        """``concurrency`` while serving, else 0."""
        return self._concurrency if self._launched and not self._done.is_set() else 0

    def _call_soon(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` on the loop, then wake ``serve()``."""
        loop, wakeup = self._loop, self._wakeup
        if loop is None or wakeup is None:
            return  # not serving yet: serve() checks the stop when it starts

        def on_loop() -> None:
            callback()
            wakeup.set()

        if loop.is_closed():
            self._loop_gone()
            return
        try:
            loop.call_soon_threadsafe(on_loop)
        except RuntimeError:  # closed meanwhile
            self._loop_gone()

    # -- on the loop -----------------------------------------------------------

    async def serve(self) -> None:
        """Start ``concurrency`` worker tasks, wait for the stop, then for
        the workers (``finish`` cancels them at its deadline)."""
        loop = self._loop = asyncio.get_running_loop()
        self._wakeup = wakeup = asyncio.Event()
        self._inbox.attach(loop, self._jobs_came)
        closed = False
        try:
            await self._serve(loop, wakeup)
        except asyncio.CancelledError:
            if not self._stopping.is_set():  # the loop is ending without a stop
                self._loop_ended()
            raise
        except GeneratorExit:  # the loop was closed under us: nothing can be awaited
            closed = True
            raise
        finally:
            self._inbox.detach()
            try:
                while self._tasks and not closed:  # also when serve() is cancelled
                    await asyncio.wait(list(self._tasks))
            finally:
                self._done.set()

    async def _serve(self, loop: asyncio.AbstractEventLoop, wakeup: asyncio.Event) -> None:
        """Start the workers (a batch a step), then wait for the stop."""
        for number in range(1, self._concurrency + 1):
            if self._stopping.is_set():
                break
            task = loop.create_task(self._work(), name=f"{self.name}-worker-{number}")
            self._tasks.add(task)
            task.add_done_callback(self._worked)
            if number % _STARTS_PER_STEP == 0:
                await asyncio.sleep(0)  # let other callbacks run between batches
        while not self._stopping.is_set():
            await wakeup.wait()
            wakeup.clear()
        while self._idle:  # idle workers see the stop and end, a batch a step
            self._wake_idle(_WAKES_PER_STEP)
            await asyncio.sleep(0)

    def _loop_ended(self) -> None:
        """``serve()`` was cancelled without a stop (``asyncio.run`` returned,
        or someone cancelled the task): the consumer is stopped at once, as
        when a role dies; its workers end after their current job."""
        reason = (
            "was cancelled while the consumer ran: did the event loop end (asyncio.run "
            "returning) without a stop? Stop it first: leave `async with consumer:`, or "
            "`await consumer.stop_async()`"
        )
        self._failed("event-loop", RuntimeError(f"its task {reason}"), "task", why=reason)

    def _served(self, task: asyncio.Task[None]) -> None:
        """``serve()`` on the caller's loop ended: a bug of ours if it raised
        (a cancellation was reported by ``serve()`` itself)."""
        self._done.set()
        if not task.cancelled():
            exc = task.exception()
            if exc is not None:
                self._failed("event-loop", exc, "task")

    def _jobs_came(self) -> None:
        """The fetcher added jobs: wake idle workers for them, a few at a time
        (each woken worker wakes two more while jobs wait: waking 500 in one
        callback would hold the loop)."""
        self._wake_idle(min(self._inbox.waiting(), _WAKES_PER_STEP))

    def _wake_idle(self, count: int) -> None:
        idle = self._idle
        while count > 0 and idle:
            waiter = idle.popleft()
            if not waiter.done():  # a cancelled worker's is
                waiter.set_result(None)
                count -= 1

    async def _work(self) -> None:
        """One worker: run jobs from the inbox one after another until the
        consumer stops. Jobs that do not wait run back to back, but all the
        workers together get ``_STEP_SECONDS`` per turn of the loop (see
        :meth:`_turn_spent`); then they let the loop poll I/O and fire timers."""
        take, run, stopping = self._inbox.take, self._run, self._stopping
        loop = self._loop
        assert loop is not None
        while not stopping.is_set():
            if self._turn_spent():
                await asyncio.sleep(0)
                continue
            claimed = take()
            if claimed is None:
                waiter = loop.create_future()
                self._idle.append(waiter)
                await waiter
                self._wake_idle(min(self._inbox.waiting() - 1, 2))
                continue
            if await run(claimed):
                return  # cancelled by a stop, or by the loop ending: this worker ends

    def _turn_spent(self) -> bool:
        """Whether the workers have used this turn of the loop's time budget.
        The first worker to run in a turn opens it and schedules its end
        (``call_soon``: it runs at the start of the next turn, after the loop
        has polled I/O); a worker that finds it spent yields before taking a
        job. So a burst of jobs that do not wait holds the loop for about
        ``_STEP_SECONDS`` per turn, however many workers are ready."""
        ends = self._turn_ends
        if ends is None:
            self._turn_ends = time.perf_counter() + _STEP_SECONDS
            assert self._loop is not None
            self._loop.call_soon(self._new_turn)
            return False
        return time.perf_counter() > ends

    def _new_turn(self) -> None:
        self._turn_ends = None

    def _worked(self, task: asyncio.Task[None]) -> None:
        """A worker task ended: when the consumer stops, or cancelled by a
        stop; an exception is a bug of ours (``_run`` catches what handlers
        do), supervised like a role thread's."""
        self._tasks.discard(task)
        if not task.cancelled():
            exc = task.exception()
            if exc is not None:
                self._failed("event-loop", exc, "task")

    def _cancel_all(self) -> None:
        self._cancelling_all = True
        for task in self._tasks:
            task.cancel()

    async def _run(self, claimed: ClaimedJob) -> bool:
        """Run one job and record its outcome; return whether the worker was
        cancelled meanwhile (then it must end)."""
        ledger = self._ledger
        if ledger.deadline(claimed.id) <= time.monotonic():
            await in_own_thread(self._fetcher.give_up, claimed)
            return False
        began = time.perf_counter()
        cancelled = False
        try:
            settlement, error, level = await self._runner.run_async(claimed)
        except asyncio.CancelledError:  # the consumer stopped: retried at once
            settlement, error, level = self._stopped(claimed)
            cancelled = True
        held = ledger.finish(self._slot, claimed, settlement, time.perf_counter() - began)
        if held == LATE:
            log_outcome(logging.WARNING, claimed, settlement, error, LATE_NOTE)
            return True
        fetcher = self._fetcher
        if held == fetcher.refill_level:
            fetcher.wake.set()
        if level:
            log_outcome(level, claimed, settlement, error)
        if cancelled or self._cancelling_all:
            return True  # a stop cancelled this worker (even if the handler swallowed it)
        task = asyncio.current_task()
        while task is not None and task.cancelling():
            # A cancellation requested by the handler's own code and left
            # pending (Python 3.11's TaskGroup can leave one on its parent):
            # it must not end this long-lived worker, nor reach the next job.
            task.uncancel()
        return False

    def _stopped(self, claimed: ClaimedJob) -> Run:
        self.cancelled += 1
        reason = "cancelled: the consumer stopped before the handler finished"
        settlement = self._runner.after_error(claimed, reason, 0.0)
        return settlement, None, logging.WARNING if settlement.kind == "retry" else logging.ERROR
