"""Middleware: onion-style wrappers around consuming and publishing.

A middleware overrides any of

- ``process(job, call_next) -> Outcome`` — around every call of a sync
  handler (``def``);
- ``async process_async(job, call_next) -> Outcome`` — around every call of
  an async handler (``async def``), on the consumer's event loop;
  ``call_next`` is then a coroutine function;
- ``publish(message, call_next) -> None`` — around every put, before the
  payload is encoded (so it may change the payload, headers or options).

A layer must wrap the kind of handler it is given: a consumer refuses, when
it is made, a layer that overrides only ``process`` for an async handler
(calling it would run sync code on the loop, and its ``try`` around
``call_next`` would not see the handler's errors), and one that overrides
only ``process_async`` for a sync handler. The built-in middleware do both.

The chain is a fold built once per consumer/publisher: the first middleware
in the list is the outermost. Exceptions raised by a middleware propagate
like a handler's (they are never swallowed by the chain).
"""

from __future__ import annotations

import inspect
import logging
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ._errors import ConfigurationError
from ._job import Job
from ._outcomes import Ack, Outcome, Reject, Retry

__all__ = [
    "AsyncProcessFn",
    "ErrorReporter",
    "LoggingMiddleware",
    "Message",
    "Middleware",
    "ProcessFn",
    "PublishFn",
    "compose_process",
    "compose_process_async",
    "compose_publish",
    "describe_exception",
    "is_middleware_like",
    "publishing",
]

ProcessFn = Callable[[Job], Any]
AsyncProcessFn = Callable[[Job], Awaitable[Any]]
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
    """Base class for middleware; override ``process``, ``process_async``,
    ``publish``, or any of them."""

    def process(self, job: Job, call_next: ProcessFn) -> Outcome:
        result: Outcome = call_next(job)
        return result

    async def process_async(self, job: Job, call_next: AsyncProcessFn) -> Outcome:
        result: Outcome = await call_next(job)
        return result

    def publish(self, message: Message, call_next: PublishFn) -> None:
        call_next(message)


def _overrides(middleware: object, name: str) -> bool:
    method = getattr(type(middleware), name, None)
    return method is not None and method is not getattr(Middleware, name)


def compose_process(middleware: Sequence[object], handler: ProcessFn) -> ProcessFn:
    """Fold ``middleware`` around a sync ``handler``; the first element is
    outermost. Middleware that does not override ``process`` adds no layer;
    one that overrides only ``process_async`` is refused."""
    call = handler
    for layer in reversed(middleware):
        if _wraps(layer, "process", "process_async", "a sync (def) handler"):
            call = _bind(layer.process, call)  # type: ignore[attr-defined]
    return call


def compose_process_async(middleware: Sequence[object], handler: AsyncProcessFn) -> AsyncProcessFn:
    """Fold ``middleware`` around an async ``handler`` (its ``process_async``
    methods); the first element is outermost. Middleware that overrides
    neither adds no layer; one that overrides only ``process`` is refused."""
    call = handler
    for layer in reversed(middleware):
        if _wraps(layer, "process_async", "process", "an async (async def) handler"):
            call = _bind(layer.process_async, call)  # type: ignore[attr-defined]
    return call


def _wraps(layer: object, method: str, other: str, handler: str) -> bool:
    """Whether ``layer`` adds a ``method`` layer; refuse it if it only wraps
    the other kind of handler, or if its methods are of the wrong kind."""
    who = describe_layer(layer)
    for name, should_be_async in (("process", False), ("process_async", True)):
        wrong = inspect.iscoroutinefunction(getattr(layer, name, None)) != should_be_async
        if wrong and _overrides(layer, name):
            kind = "an async def" if should_be_async else "a def (not async def)"
            raise ConfigurationError(f"{who}: {name} must be {kind} method (docs/middleware.md)")
    if _overrides(layer, method):
        return True
    if _overrides(layer, other):
        plugin = getattr(layer, PLUGIN_ATTRIBUTE, None)
        way_out = (
            f"or leave plugin {plugin!r} out of this consumer (plugins=False, or "
            f"TASKMASTER_DISABLE_PLUGINS={plugin})"
            if plugin
            else "or leave it out of this consumer's middleware"
        )
        raise ConfigurationError(
            f"{who} wraps only {'async' if other == 'process_async' else 'sync'} "
            f"handlers (it defines {other} but not {method}), and this consumer runs "
            f"{handler}: give it a {method} method (docs/middleware.md), {way_out}"
        )
    return False


PLUGIN_ATTRIBUTE = "_taskmaster_plugin"
"""Where plugin middleware is tagged with the name of the plugin it came from
(best effort: an object that takes no attributes is not tagged)."""


def describe_layer(layer: object) -> str:
    """A middleware for messages: its class, and the plugin it came from."""
    kind = type(layer)
    plugin = getattr(layer, PLUGIN_ATTRIBUTE, None)
    origin = f" (from plugin {plugin!r})" if plugin else ""
    return f"middleware {kind.__module__}.{kind.__qualname__}{origin}"


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
    """Middleware is anything with a ``process``, ``process_async`` or
    ``publish`` method."""
    names = ("process", "process_async", "publish")
    return any(callable(getattr(obj, name, None)) for name in names)


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
        if not self.logger.isEnabledFor(self.level):
            result: Outcome = call_next(job)
            return result
        started = self._started(job)
        try:
            outcome: Outcome = call_next(job)
        except BaseException:
            self._ended(job, started, "failure")
            raise
        self._ended(job, started, outcome_name(outcome))
        return outcome

    async def process_async(self, job: Job, call_next: AsyncProcessFn) -> Outcome:
        if not self.logger.isEnabledFor(self.level):
            result: Outcome = await call_next(job)
            return result
        started = self._started(job)
        try:
            outcome: Outcome = await call_next(job)
        except BaseException:
            self._ended(job, started, "failure")
            raise
        self._ended(job, started, outcome_name(outcome))
        return outcome

    def _started(self, job: Job) -> float:
        self.logger.log(
            self.level,
            "status=start queue=%s job=%s attempt=%s",
            job.queue,
            job.id,
            job.attempt,
            extra={"queue": job.queue, "job_id": job.id, "attempt": job.attempt},
        )
        return time.perf_counter()

    def _ended(self, job: Job, started: float, status: str) -> None:
        elapsed = (time.perf_counter() - started) * 1000
        self.logger.log(
            self.level,
            "status=%s queue=%s job=%s attempt=%s time=%.1fms",
            status,
            job.queue,
            job.id,
            job.attempt,
            elapsed,
            extra={
                "queue": job.queue,
                "job_id": job.id,
                "attempt": job.attempt,
                "outcome": status,
                "elapsed_ms": elapsed,
            },
        )

    def publish(self, message: Message, call_next: PublishFn) -> None:
        call_next(message)
        self.logger.debug("status=put queue=%s", message.queue, extra={"queue": message.queue})


class ErrorReporter(Middleware):
    """Calls ``callback(job, exception)`` when a handler raises.

    By default the exception then propagates, so the retry policy applies.
    With ``reject=True`` it behaves like the original Taskmaster's
    ``with-error``: it logs ``status=failure`` and returns ``Reject`` with the
    error text, so the job fails at once. A callback that itself raises is
    logged and does not change the job's fate. On an async consumer the
    callback may be ``async def`` (it is awaited); a ``def`` callback is then
    called on the event loop, so it must be quick.
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
                    returned = self.callback(job, exc)
                    if inspect.isawaitable(returned):  # an async callback on a sync consumer
                        _close(returned)
                        raise ConfigurationError(
                            "ErrorReporter's callback is async: it is awaited only on an "
                            "async consumer; give a sync consumer a def callback"
                        )
                except Exception:
                    self._callback_failed(job)
            return self._after(job, exc)

    async def process_async(self, job: Job, call_next: AsyncProcessFn) -> Outcome:
        try:
            result: Outcome = await call_next(job)
            return result
        except Exception as exc:
            if self.callback is not None:
                try:  # a def callback runs on the loop: it must be quick
                    returned = self.callback(job, exc)
                    if inspect.isawaitable(returned):
                        await returned
                except Exception:
                    self._callback_failed(job)
            return self._after(job, exc)

    def _callback_failed(self, job: Job) -> None:
        self.logger.exception("error callback failed for job %s on queue %s", job.id, job.queue)

    def _after(self, job: Job, exc: Exception) -> Outcome:
        """Re-raise ``exc`` (the retry policy applies), or with ``reject``
        log it and fail the job."""
        if not self.reject:
            raise exc
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


def _close(awaitable: object) -> None:
    close = getattr(awaitable, "close", None)
    if callable(close):
        close()
