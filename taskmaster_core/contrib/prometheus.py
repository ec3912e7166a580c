"""Prometheus metrics for consumers and publishers (needs ``prometheus_client``).

Metrics (``namespace`` defaults to ``taskmaster``):

- ``taskmaster_jobs_published_total{queue}`` — jobs handed to the broker;
- ``taskmaster_jobs_processed_total{queue,outcome}`` — handler runs by outcome
  (``ack``, ``reject``, ``retry``, ``error`` for an exception, ``invalid``
  for a bad return value);
- ``taskmaster_job_duration_seconds{queue}`` — handler time, a histogram;
- ``taskmaster_jobs_in_progress{queue}`` — handlers running now.
"""

from __future__ import annotations

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

__all__ = ["PrometheusMiddleware", "require", "taskmaster_middleware"]

_import_error: ImportError | None = None
try:
    import prometheus_client
except ImportError as exc:  # tested in a subprocess that hides the library
    prometheus_client = None  # type: ignore[assignment]
    _import_error = exc


def require(who: str = "PrometheusMiddleware") -> None:
    """Raise ``ConfigurationError`` saying what to install if
    ``prometheus_client`` cannot be imported (``who`` needs it)."""
    if _import_error is not None:
        raise ConfigurationError(
            missing_library(
                who, "prometheus_client", "prometheus_client", "prometheus", _import_error
            )
        ) from _import_error


class PrometheusMiddleware(Middleware):
    """Counts and times jobs; see the module docstring for the metric names."""

    def __init__(self, registry: Any = None, namespace: str = "taskmaster") -> None:
        require()
        registry = registry if registry is not None else prometheus_client.REGISTRY
        self.published = prometheus_client.Counter(
            "jobs_published",
            "Jobs handed to the broker.",
            ["queue"],
            namespace=namespace,
            registry=registry,
        )
        self.processed = prometheus_client.Counter(
            "jobs_processed",
            "Handler runs by outcome.",
            ["queue", "outcome"],
            namespace=namespace,
            registry=registry,
        )
        self.duration = prometheus_client.Histogram(
            "job_duration_seconds",
            "Time spent in the handler.",
            ["queue"],
            namespace=namespace,
            registry=registry,
        )
        self.in_progress = prometheus_client.Gauge(
            "jobs_in_progress",
            "Handlers running now.",
            ["queue"],
            namespace=namespace,
            registry=registry,
        )
        self._series: dict[str, _Series] = {}

    def process(self, job: Job, call_next: ProcessFn) -> Outcome:
        series = self._started(job)
        started = time.perf_counter()
        try:
            outcome: Outcome = call_next(job)
        except BaseException:
            series.outcome("error").inc()
            raise
        else:
            series.outcome(outcome_name(outcome)).inc()
            return outcome
        finally:
            series.ended(started)

    async def process_async(self, job: Job, call_next: AsyncProcessFn) -> Outcome:
        series = self._started(job)
        started = time.perf_counter()
        try:
            outcome: Outcome = await call_next(job)
        except BaseException:  # a timeout or a stop's cancellation counts as an error
            series.outcome("error").inc()
            raise
        else:
            series.outcome(outcome_name(outcome)).inc()
            return outcome
        finally:
            series.ended(started)

    def _started(self, job: Job) -> _Series:
        series = self._series.get(job.queue)
        if series is None:
            series = self._series.setdefault(job.queue, _Series(self, job.queue))
        series.in_progress.inc()
        return series

    def publish(self, message: Message, call_next: PublishFn) -> None:
        call_next(message)
        self.published.labels(message.queue).inc()


class _Series:
    """One queue's labelled children, looked up once instead of per job."""

    __slots__ = ("_metrics", "_outcomes", "_queue", "duration", "in_progress")

    def __init__(self, metrics: PrometheusMiddleware, queue: str) -> None:
        self._metrics = metrics
        self._queue = queue
        self.in_progress = metrics.in_progress.labels(queue)
        self.duration = metrics.duration.labels(queue)
        self._outcomes: dict[str, Any] = {}

    def ended(self, started: float) -> None:
        self.duration.observe(time.perf_counter() - started)
        self.in_progress.dec()

    def outcome(self, name: str) -> Any:
        child = self._outcomes.get(name)
        if child is None:
            child = self._outcomes[name] = self._metrics.processed.labels(self._queue, name)
        return child


_shared: PrometheusMiddleware | None = None


@hookimpl
def taskmaster_middleware() -> list[Middleware]:
    """One middleware on the default registry for the whole process."""
    global _shared
    require("plugin 'prometheus'")
    if _shared is None:
        _shared = PrometheusMiddleware()
    return [_shared]
