"""Middleware: onion-style wrappers around consuming and publishing.

A middleware overrides either or both of

- ``process(job, call_next) -> Outcome`` — around every handler call;
- ``publish(message, call_next) -> None`` — around every put, before the
  payload is encoded (so it may change the payload, headers or options).

The chain is a fold built once per consumer/publisher: the first middleware
in the list is the outermost. Exceptions raised by a middleware propagate
like a handler's (they are never swallowed by the chain).
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ._job import Job
from ._outcomes import Ack, Outcome, Reject, Retry

__all__ = [
    "ErrorReporter",
    "LoggingMiddleware",
    "Message",
    "Middleware",
    "ProcessFn",
    "PublishFn",
    "compose_process",
    "compose_publish",
    "describe_exception",
    "is_middleware_like",
    "publishing",
]

ProcessFn = Callable[[Job], Any]
PublishFn = Callable[["Message"], None]


@dataclass(slots=True)
class Message:
    """A job on its way to the broker, as publish middleware sees it."""

    queue: str
    payload: Any
    priority: int = 0
    delay: float = 0.0
    run_at: datetime | None = None
    dedup_key: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    max_attempts: int | None = None
    """``None``: the queue's or publisher's default."""
    serializer: str | None = None
    """``None``: the queue's or publisher's default."""


class Middleware:
    """Base class for middleware; override ``process``, ``publish`` or both."""

    def process(self, job: Job, call_next: ProcessFn) -> Outcome:
        result: Outcome = call_next(job)
        return result

    def publish(self, message: Message, call_next: PublishFn) -> None:
        call_next(message)


def _overrides(middleware: object, name: str) -> bool:
    method = getattr(type(middleware), name, None)
    return method is not None and method is not getattr(Middleware, name)


def compose_process(middleware: Sequence[object], handler: ProcessFn) -> ProcessFn:
    """Fold ``middleware`` around ``handler``; the first element is outermost.
    Middleware that does not override ``process`` adds no layer."""
    call = handler
    for layer in reversed(middleware):
        if _overrides(layer, "process"):
            call = _bind(layer.process, call)  # type: ignore[attr-defined]
    return call


def publishing(middleware: Sequence[object]) -> list[object]:
    """The middleware that take part in publishing (override ``publish``)."""
    return [m for m in middleware if _overrides(m, "publish")]


def compose_publish(middleware: Sequence[object], terminal: PublishFn) -> PublishFn | None:
    """The publish chain around ``terminal``, or ``None`` when no middleware
    takes part (so publishers can skip the chain entirely)."""
    layers = publishing(middleware)
    if not layers:
        return None
    call = terminal
    for layer in reversed(layers):
        call = _bind(layer.publish, call)  # type: ignore[attr-defined]
    return call


def _bind(method: Callable[[Any, Any], Any], call_next: Callable[[Any], Any]) -> Any:
    def layer(item: Any) -> Any:
        return method(item, call_next)

    return layer


def is_middleware_like(obj: object) -> bool:
    """Middleware is anything with a ``process`` or ``publish`` method."""
    return callable(getattr(obj, "process", None)) or callable(getattr(obj, "publish", None))


def describe_exception(exc: BaseException, *, limit: int = 8000) -> str:
    """``Type: message`` followed by the traceback, cut to ``limit`` characters."""
    text = "".join(traceback.format_exception(exc)).rstrip()
    head = f"{type(exc).__qualname__}: {exc}"
    full = f"{head}\n{text}"
    return full if len(full) <= limit else full[: limit - 15] + "\n…(truncated)"


def outcome_name(outcome: object) -> str:
    if isinstance(outcome, Ack):
        return "ack"
    if isinstance(outcome, Reject):
        return "reject"
    if isinstance(outcome, Retry):
        return "retry"
    return "invalid"


class LoggingMiddleware(Middleware):
    """Logs each job like the original Taskmaster's ``with-log``.

    ``status=start`` when a handler starts, then ``status=ack``,
    ``status=reject`` or ``status=retry`` with ``time=<ms>`` — or
    ``status=failure`` with the time when the handler raised (the exception
    propagates). Records carry the fields ``queue``, ``job_id``, ``attempt``,
    ``outcome`` and ``elapsed_ms`` for structured log handlers. The error
    itself is not in them: the consumer logs it, with the traceback and the
    job's fate, on ``taskmaster.consumer``.
    """

    def __init__(self, logger: logging.Logger | None = None, level: int = logging.INFO) -> None:
        self.logger = logger if logger is not None else logging.getLogger("taskmaster.jobs")
        self.level = level

    def process(self, job: Job, call_next: ProcessFn) -> Outcome:
        logger, level = self.logger, self.level
        if not logger.isEnabledFor(level):
            result: Outcome = call_next(job)
            return result
        fields = {"queue": job.queue, "job_id": job.id, "attempt": job.attempt}
        logger.log(
            level,
            "status=start queue=%s job=%s attempt=%s",
            job.queue,
            job.id,
            job.attempt,
            extra=fields,
        )
        started = time.perf_counter()
        try:
            outcome: Outcome = call_next(job)
        except BaseException:
            elapsed = (time.perf_counter() - started) * 1000
            logger.log(
                level,
                "status=failure queue=%s job=%s attempt=%s time=%.1fms",
                job.queue,
                job.id,
                job.attempt,
                elapsed,
                extra={**fields, "outcome": "failure", "elapsed_ms": elapsed},
            )
            raise
        elapsed = (time.perf_counter() - started) * 1000
        name = outcome_name(outcome)
        logger.log(
            level,
            "status=%s queue=%s job=%s attempt=%s time=%.1fms",
            name,
            job.queue,
            job.id,
            job.attempt,
            elapsed,
            extra={**fields, "outcome": name, "elapsed_ms": elapsed},
        )
        return outcome

    def publish(self, message: Message, call_next: PublishFn) -> None:
        call_next(message)
        self.logger.debug("status=put queue=%s", message.queue, extra={"queue": message.queue})


class ErrorReporter(Middleware):
    """Calls ``callback(job, exception)`` when a handler raises.

    By default the exception then propagates, so the retry policy applies.
    With ``reject=True`` it behaves like the original Taskmaster's
    ``with-error``: it logs ``status=failure`` and returns ``Reject`` with the
    error text, so the job fails at once. A callback that itself raises is
    logged and does not change the job's fate.
    """

    def __init__(
        self,
        callback: Callable[[Job, BaseException], object] | None = None,
        *,
        reject: bool = False,
        logger: logging.Logger | None = None,
    ) -> None:
        self.callback = callback
        self.reject = reject
        self.logger = logger if logger is not None else logging.getLogger("taskmaster.errors")

    def process(self, job: Job, call_next: ProcessFn) -> Outcome:
        try:
            result: Outcome = call_next(job)
            return result
        except Exception as exc:
            if self.callback is not None:
                try:
                    self.callback(job, exc)
                except Exception:
                    self.logger.exception(
                        "error callback failed for job %s on queue %s", job.id, job.queue
                    )
            if not self.reject:
                raise
            self.logger.error(
                "status=failure queue=%s job=%s attempt=%s error=%r",
                job.queue,
                job.id,
                job.attempt,
                exc,
                exc_info=exc,
                extra={"queue": job.queue, "job_id": job.id, "attempt": job.attempt},
            )
            return Reject(describe_exception(exc))
