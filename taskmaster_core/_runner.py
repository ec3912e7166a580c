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

import logging
from collections.abc import Callable, Sequence
from typing import Any

from ._broker import Broker
from ._errors import TaskmasterError
from ._job import Job
from ._middleware import compose_process, describe_exception
from ._outcomes import Ack, Reject, Retry
from ._plugins import SerializerRegistry
from ._retry import RetryPolicy
from ._types import ClaimedJob, Lease, Settlement

__all__ = ["Runner", "drain", "log_outcome"]

logger = logging.getLogger("taskmaster.consumer")

Handler = Callable[[Job], Any]


class Runner:
    """Runs claimed jobs through ``middleware`` and ``handler``."""

    def __init__(
        self,
        handler: Handler,
        middleware: Sequence[object],
        serializers: SerializerRegistry,
        payload_type: Any,
        context: Any,
        retry: RetryPolicy,
    ) -> None:
        self._process = compose_process(middleware, handler)
        self._serializers = serializers
        self._payload_type = payload_type
        self._context = context
        self._retry = retry

    def run(self, claimed: ClaimedJob) -> tuple[Settlement, BaseException | None, int]:
        """Decode, run through middleware and handler, and decide the outcome.

        Returns the settlement; the exception when the job did not succeed
        because of one (or of a bad return value); and the level to log the
        outcome at (0: nothing to log, the job succeeded): INFO for what the
        handler asked for (``Retry``, ``Reject``), WARNING for a retry caused
        by an exception, ERROR for a job that ends failed without the handler
        asking for it. The caller logs, so that a timed-out handler's late
        result, which is discarded, is not logged either."""
        try:
            serializer = self._serializers.get(claimed.serializer)
            payload = serializer.loads(claimed.payload, self._payload_type)
        except Exception as exc:
            # Middleware never sees this job (there is no payload to hand it).
            return fail(claimed, f"cannot decode payload: {exc}"), exc, logging.ERROR
        job = Job(claimed, payload, self._context)
        try:
            outcome = self._process(job)
        except BaseException as exc:
            settlement = self.after_error(claimed, describe_exception(exc), None)
            level = logging.WARNING if settlement.kind == "retry" else logging.ERROR
            return settlement, exc, level
        if outcome.__class__ is Ack:
            return Settlement(id=claimed.id, token=claimed.token, kind="ack"), None, 0
        if isinstance(outcome, Reject):
            return fail(claimed, outcome.reason), None, logging.INFO
        if isinstance(outcome, Retry):
            settlement = self.after_error(claimed, outcome.reason, outcome.delay)
            return settlement, None, logging.INFO if settlement.kind == "retry" else logging.ERROR
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
    ran = 0
    while max_jobs is None or ran < max_jobs:
        want = 50 if max_jobs is None else min(50, max_jobs - ran)
        claimed = broker.claim(queues, want, lease)
        if not claimed:
            break
        for index, job in enumerate(claimed):
            settlement, error, level = runner.run(job)
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
