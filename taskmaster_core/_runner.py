"""Running one job: decode its payload, pass it through the middleware chain
to the handler, and turn what comes back into a settlement.

Nothing a handler does (raise, return garbage, call ``sys.exit``) escapes
:meth:`Runner.run`. Every run that does not end in ``ACK`` is logged once on
``taskmaster.consumer`` by :func:`log_outcome`, whatever the middleware:
INFO for what the handler asked for (``Retry``, ``Reject``), WARNING for a
retry caused by an error, ERROR for a job that ends failed without the
handler asking (docs/concepts.md, "What the consumer logs").
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Generator, Sequence
from typing import Any, Generic, TypeVar

from ._broker import Broker
from ._errors import TaskmasterError
from ._job import Job
from ._middleware import compose_process, compose_process_async, describe_exception
from ._outcomes import Ack, Reject, Retry
from ._plugins import SerializerRegistry
from ._retry import RetryPolicy
from ._types import ClaimedJob, Lease, Settlement

__all__ = [
    "Run",
    "Runner",
    "drain",
    "drain_async",
    "is_async_handler",
    "log_outcome",
    "timeout_tolerance",
]

logger = logging.getLogger("taskmaster.consumer")

Handler = Callable[[Job], Any]
T = TypeVar("T")

Run = tuple[Settlement, BaseException | None, int]
"""What running a job came to: its settlement, the exception behind it if
any, and the level to log it at (0: do not log)."""


def is_async_handler(handler: object) -> bool:
    """Whether calling ``handler`` makes a coroutine: an ``async def``
    function or method, a ``functools.partial`` of one, or an object whose
    ``__call__`` is ``async def``."""
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
        getattr(handler, "__call__", None)  # noqa: B004 - the method itself is inspected
    )


def in_context(awaitable: Awaitable[T]) -> _InContext[T]:
    """Await ``coroutine`` in a copy of the current context, as a task of its
    own would: context variables a handler sets stay with its job, and the
    next job on the same worker starts from the consumer's context. Each
    step of the coroutine runs in that copy; futures it waits on, and a
    cancellation thrown into it, pass through unchanged (it still runs in
    the worker's task: ``current_task()``, timeouts and cancellation work)."""
    steps: Generator[Any, Any, T] = awaitable.__await__()
    return _InContext(steps, contextvars.copy_context())


class _InContext(Generic[T]):
    __slots__ = ("_context", "_steps", "busy")

    def __init__(self, steps: Generator[Any, Any, T], context: contextvars.Context) -> None:
        self._steps = steps
        self._context = context
        self.busy = 0.0
        """Seconds spent in the awaitable's own steps (on the loop)."""

    def __await__(self) -> Generator[Any, Any, T]:
        run, steps = self._context.run, self._steps
        send, throw = steps.send, steps.throw
        clock = time.perf_counter
        sent: Any = None
        thrown: BaseException | None = None
        while True:
            began = clock()
            try:
                yielded = run(send, sent) if thrown is None else run(throw, thrown)
            except StopIteration as stop:
                self.busy += clock() - began
                result: T = stop.value
                return result
            except BaseException:
                self.busy += clock() - began
                raise
            self.busy += clock() - began
            sent, thrown = None, None
            try:
                sent = yield yielded
            except BaseException as exc:  # a cancellation (or another throw) for the coroutine
                thrown = exc


def timeout_tolerance(job_timeout: float) -> float:
    """How far past ``job_timeout`` a handler may finish before its result
    counts as late: the watchdog's interval for sync handlers, and the same
    for an async handler that blocked the loop past its deadline."""
    return min(1.0, max(0.05, job_timeout / 4))


def _being_cancelled() -> bool:
    """Whether the current task was asked to cancel (by the consumer
    stopping), as opposed to a handler raising ``CancelledError`` itself."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class Runner:
    """Runs claimed jobs through ``middleware`` and ``handler`` (sync or
    async: see :func:`is_async_handler`)."""

    def __init__(
        self,
        handler: Handler,
        middleware: Sequence[object],
        serializers: SerializerRegistry,
        payload_type: Any,
        context: Any,
        retry: RetryPolicy,
        job_timeout: float | None = None,
    ) -> None:
        self.is_async = is_async_handler(handler)
        if self.is_async:
            self._process_async = compose_process_async(middleware, handler)
        else:
            self._process = compose_process(middleware, handler)
        self._serializers = serializers
        self._payload_type = payload_type
        self._context = context
        self._retry = retry
        self._job_timeout = job_timeout

    def run(self, claimed: ClaimedJob) -> Run:
        """Decode, run through middleware and handler, and decide the outcome.

        Returns the settlement; the exception when the job did not succeed
        because of one (or of a bad return value); and the level to log the
        outcome at (0: nothing to log, the job succeeded): INFO for what the
        handler asked for (``Retry``, ``Reject``), WARNING for a retry caused
        by an exception, ERROR for a job that ends failed without the handler
        asking for it. The caller logs, so that a timed-out handler's late
        result, which is discarded, is not logged either."""
        job = self._decode(claimed)
        if not isinstance(job, Job):
            return job
        try:
            outcome = contextvars.copy_context().run(self._process, job)
        except BaseException as exc:
            return self._raised(claimed, exc)
        return self._judged(claimed, outcome)

    async def run_async(self, claimed: ClaimedJob) -> Run:
        """:meth:`run` for an async handler, awaited on the event loop. With
        ``job_timeout`` the handler's task is cancelled when it overruns
        (the handler sees ``CancelledError``) and the job is retried per
        policy, whatever the handler did with the cancellation. A
        cancellation from outside (the consumer stopping) propagates."""
        job = self._decode(claimed)
        if not isinstance(job, Job):
            return job
        if self._job_timeout is None:
            try:
                outcome = await in_context(self._process_async(job))
            except BaseException as exc:
                if isinstance(exc, asyncio.CancelledError) and _being_cancelled():
                    raise
                return self._raised(claimed, exc)
            return self._judged(claimed, outcome)
        deadline = asyncio.timeout(self._job_timeout)
        steps = in_context(self._process_async(job))
        try:
            async with deadline:
                outcome = await steps
        except BaseException as exc:
            # A stop's cancellation wins over a timeout in the same step: the
            # timeout has undone its own cancel by now, so one still counted
            # is the stop's.
            if isinstance(exc, asyncio.CancelledError) and _being_cancelled():
                raise
            if deadline.expired():
                return self._timed_out(claimed)
            return self._raised(claimed, exc)
        # A handler that swallowed a stop's cancellation and returned is judged
        # by what it returned, as without job_timeout (a completed job is not
        # run twice); the worker ends after it.
        if deadline.expired() or self._blocked(steps):
            # It swallowed the timeout's cancellation, or ran past its time
            # on the loop itself, never awaiting: a late result is discarded.
            return self._timed_out(claimed)
        return self._judged(claimed, outcome)

    def _blocked(self, steps: _InContext[Any]) -> bool:
        """Whether the handler's own steps (time on the loop, between its
        awaits) add up to more than ``job_timeout`` and the tolerance the
        watchdog gives sync handlers: it blocked the loop instead of awaiting,
        so the timeout could not fire. Time the loop spent on other handlers
        does not count against it."""
        assert self._job_timeout is not None
        return steps.busy > self._job_timeout + timeout_tolerance(self._job_timeout)

    def _timed_out(self, claimed: ClaimedJob) -> Run:
        """A job whose handler overran ``job_timeout``: retried per policy,
        or failed on its last attempt."""
        reason = f"handler timed out after {self._job_timeout:g}s; its task was cancelled"
        settlement = self.after_error(claimed, reason, None)
        return settlement, None, logging.WARNING if settlement.kind == "retry" else logging.ERROR

    def _decode(self, claimed: ClaimedJob) -> Job | Run:
        try:
            serializer = self._serializers.get(claimed.serializer)
            payload = serializer.loads(claimed.payload, self._payload_type)
        except Exception as exc:
            # Middleware never sees this job (there is no payload to hand it).
            return fail(claimed, f"cannot decode payload: {exc}"), exc, logging.ERROR
        return Job(claimed, payload, self._context)

    def _raised(self, claimed: ClaimedJob, exc: BaseException) -> Run:
        settlement = self.after_error(claimed, describe_exception(exc), None)
        level = logging.WARNING if settlement.kind == "retry" else logging.ERROR
        return settlement, exc, level

    def _judged(self, claimed: ClaimedJob, outcome: Any) -> Run:
        if outcome.__class__ is Ack:
            return Settlement(id=claimed.id, token=claimed.token, kind="ack"), None, 0
        if isinstance(outcome, Reject):
            return fail(claimed, outcome.reason), None, logging.INFO
        if isinstance(outcome, Retry):
            settlement = self.after_error(claimed, outcome.reason, outcome.delay)
            return settlement, None, logging.INFO if settlement.kind == "retry" else logging.ERROR
        if inspect.isawaitable(outcome):
            close = getattr(outcome, "close", None)
            if callable(close):
                close()  # never awaited: no "coroutine was never awaited" warning later
            advice = (
                "await it in the handler (`return await ...`)"
                if self.is_async
                else "a sync consumer does not await; declare the handler `async def`"
            )
            error = (
                f"handler returned {type(outcome).__name__} {outcome!r} instead of an outcome: "
                f"{advice} (docs/async.md)"
            )
        else:
            error = (
                f"handler returned {outcome!r} ({type(outcome).__name__}); "
                "expected ACK, REJECT, Reject(reason) or Retry(delay)"
            )
        return (
            fail(claimed, error),
            TaskmasterError(f"job {claimed.id}: {error}"),
            logging.ERROR,
        )

    def after_error(self, claimed: ClaimedJob, error: str, delay: float | None) -> Settlement:
        """A retry after ``delay`` (``None``: the retry policy's), or a failure
        if the job's attempts are used up."""
        if claimed.attempt >= claimed.max_attempts:
            used = f"attempts used up ({claimed.attempt}/{claimed.max_attempts}): {error}"
            return fail(claimed, used)
        wait = self._retry.delay(claimed.attempt) if delay is None else delay
        return Settlement(id=claimed.id, token=claimed.token, kind="retry", error=error, delay=wait)


def fail(claimed: ClaimedJob, error: str) -> Settlement:
    return Settlement(id=claimed.id, token=claimed.token, kind="fail", error=error)


def log_outcome(
    level: int,
    claimed: ClaimedJob,
    settlement: Settlement,
    exc: BaseException | None,
    note: str = "",
) -> None:
    """One record for a job that will run again or ends failed: its queue,
    id, attempt/max and the first line of the error it is stored with, and
    the traceback (``exc_info``) when a handler or middleware raised.
    ``status`` is where the job goes: ``retry``, ``rejected`` (the handler
    said so) or ``failed``."""
    if not logger.isEnabledFor(level):
        return
    error = (settlement.error or "").partition("\n")[0] + note
    fields = {
        "queue": claimed.queue,
        "job_id": claimed.id,
        "attempt": claimed.attempt,
        "max_attempts": claimed.max_attempts,
    }
    exc_info = exc if exc is not None and exc.__traceback__ is not None else None
    if settlement.kind == "retry":
        logger.log(
            level,
            "status=retry queue=%s job=%s attempt=%s/%s delay=%.2fs error=%s",
            claimed.queue,
            claimed.id,
            claimed.attempt,
            claimed.max_attempts,
            settlement.delay,
            error,
            exc_info=exc_info,
            extra={**fields, "outcome": "retry"},
        )
        return
    status = "rejected" if level == logging.INFO else "failed"
    logger.log(
        level,
        "status=%s queue=%s job=%s attempt=%s/%s error=%s",
        status,
        claimed.queue,
        claimed.id,
        claimed.attempt,
        claimed.max_attempts,
        error,
        exc_info=exc_info,
        extra={**fields, "outcome": status},
    )


def drain(
    runner: Runner,
    broker: Broker,
    queues: Sequence[str],
    lease: float,
    raise_errors: bool,
    max_jobs: int | None,
) -> int:
    """``Consumer.drain``: run ready jobs in the calling thread, one at a time."""
    steps = _drain_steps(broker, queues, lease, raise_errors, max_jobs)
    try:
        job = next(steps)
        while True:
            job = steps.send(runner.run(job))
    except StopIteration as done:
        ran: int = done.value
        return ran


async def drain_async(
    runner: Runner,
    broker: Broker,
    queues: Sequence[str],
    lease: float,
    raise_errors: bool,
    max_jobs: int | None,
) -> int:
    """``Consumer.drain_async``: :func:`drain` for an async handler, awaited
    on the caller's loop (the broker is called synchronously: for tests)."""
    steps = _drain_steps(broker, queues, lease, raise_errors, max_jobs)
    try:
        job = next(steps)
        while True:
            try:
                run = await runner.run_async(job)
            except BaseException as exc:  # cancelled: the steps release the jobs
                steps.throw(exc)
                raise
            job = steps.send(run)
    except StopIteration as done:
        ran: int = done.value
        return ran


def _drain_steps(
    broker: Broker,
    queues: Sequence[str],
    lease: float,
    raise_errors: bool,
    max_jobs: int | None,
) -> Generator[ClaimedJob, Run, int]:
    """The broker's side of a drain: yields each job to run, is sent what
    the run came to, and returns how many ran (one source for both drivers)."""
    ran = 0
    while max_jobs is None or ran < max_jobs:
        want = 50 if max_jobs is None else min(50, max_jobs - ran)
        claimed = broker.claim(queues, want, lease)
        if not claimed:
            break
        for index, job in enumerate(claimed):
            try:
                settlement, error, level = yield job
            except BaseException:  # the drain was cancelled: its jobs go back
                broker.release([Lease(j.id, j.token) for j in claimed[index:]])
                raise
            if level:
                log_outcome(level, job, settlement, error)
            broker.settle([settlement])
            ran += 1
            if raise_errors and error is not None:
                rest = claimed[index + 1 :]
                if rest:
                    broker.release([Lease(j.id, j.token) for j in rest])
                raise error
    return ran
