"""OpenTelemetry tracing from put to handler (needs ``opentelemetry-api``).

On put, a ``PRODUCER`` span ``publish <queue>`` is started and its context
is written into the job's headers (W3C ``traceparent``/``tracestate`` via the
globally configured propagator). The handler then runs inside a ``CONSUMER``
span ``process <queue>`` whose parent is that context, so a trace follows a
job from the request that put it to the worker that ran it. Exceptions are
recorded on the span; rejects and failures set an error status.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from .._errors import ConfigurationError
from .._hookspecs import hookimpl
from .._job import Job
from .._middleware import (
    AsyncProcessFn,
    Message,
    Middleware,
    ProcessFn,
    PublishFn,
    outcome_name,
)
from .._outcomes import Outcome
from . import missing_library

__all__ = ["TracingMiddleware", "require", "taskmaster_middleware"]

_import_error: ImportError | None = None
try:
    from opentelemetry import propagate, trace
except ImportError as exc:  # tested in a subprocess that hides the library
    propagate = None  # type: ignore[assignment]
    trace = None  # type: ignore[assignment]
    _import_error = exc


def require(who: str = "TracingMiddleware") -> None:
    """Raise ``ConfigurationError`` saying what to install if
    ``opentelemetry-api`` cannot be imported (``who`` needs it)."""
    if _import_error is not None:
        raise ConfigurationError(
            missing_library(
                who, "opentelemetry-api", "opentelemetry", "opentelemetry", _import_error
            )
        ) from _import_error


_SYSTEM = "taskmaster"


class TracingMiddleware(Middleware):
    """Spans around put and handler, linked through job headers."""

    def __init__(self, tracer_provider: Any = None) -> None:
        require()
        self._provider = tracer_provider
        self._cached: Any = None
        self._recheck_at = 0.0

    def _tracer(self) -> Any:
        """The tracer, or ``None`` while no SDK is configured (then tracing
        would only cost time). While none is, the global provider is looked
        at again at most once a second, so one configured after start-up is
        picked up; once found, the tracer is kept."""
        tracer = self._cached
        if tracer is not None:
            return tracer
        now = time.monotonic()
        if now < self._recheck_at:
            return None
        provider = self._provider
        if provider is None:
            provider = trace.get_tracer_provider()
            if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
                self._recheck_at = now + 1.0
                return None
        self._cached = trace.get_tracer("taskmaster", tracer_provider=provider)
        return self._cached

    def publish(self, message: Message, call_next: PublishFn) -> None:
        tracer = self._tracer()
        if tracer is None:
            call_next(message)
            return
        attributes = {
            "messaging.system": _SYSTEM,
            "messaging.destination.name": message.queue,
            "messaging.operation.type": "publish",
        }
        with tracer.start_as_current_span(
            f"publish {message.queue}", kind=trace.SpanKind.PRODUCER, attributes=attributes
        ):
            assert propagate is not None
            propagate.inject(message.headers)
            call_next(message)

    def process(self, job: Job, call_next: ProcessFn) -> Outcome:
        span_of_job = self._span(job)
        if span_of_job is None:
            result: Outcome = call_next(job)
            return result
        with span_of_job as span:
            outcome: Outcome = call_next(job)  # exceptions are recorded by the span
            return _recorded(span, outcome)

    async def process_async(self, job: Job, call_next: AsyncProcessFn) -> Outcome:
        span_of_job = self._span(job)
        if span_of_job is None:
            result: Outcome = await call_next(job)
            return result
        # The span is current for this job only: each job runs in a copy of
        # the context (see Runner.run_async), whichever worker task runs it.
        with span_of_job as span:
            try:
                outcome: Outcome = await call_next(job)
            except asyncio.CancelledError as exc:  # not an Exception: the span skips it
                span.record_exception(exc)
                span.set_status(
                    trace.Status(
                        trace.StatusCode.ERROR, "cancelled (job_timeout, or the consumer stopped)"
                    )
                )
                raise
            return _recorded(span, outcome)

    def _span(self, job: Job) -> Any:
        """The span to run ``job`` in, a child of the publisher's span whose
        context travelled in the job's headers; ``None`` with no SDK."""
        tracer = self._tracer()
        if tracer is None:
            return None
        assert propagate is not None
        attributes = {
            "messaging.system": _SYSTEM,
            "messaging.destination.name": job.queue,
            "messaging.operation.type": "process",
            "messaging.message.id": str(job.id),
            "taskmaster.attempt": job.attempt,
        }
        return tracer.start_as_current_span(
            f"process {job.queue}",
            context=propagate.extract(job.headers),
            kind=trace.SpanKind.CONSUMER,
            attributes=attributes,
        )


def _recorded(span: Any, outcome: Outcome) -> Outcome:
    name = outcome_name(outcome)
    span.set_attribute("taskmaster.outcome", name)
    if name in ("reject", "invalid"):
        span.set_status(trace.Status(trace.StatusCode.ERROR, f"job {name}ed"))
    return outcome


_shared: TracingMiddleware | None = None


@hookimpl
def taskmaster_middleware() -> list[Middleware]:
    global _shared
    require("plugin 'opentelemetry'")
    if _shared is None:
        _shared = TracingMiddleware()
    return [_shared]
