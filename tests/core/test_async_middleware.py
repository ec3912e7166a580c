"""Middleware around async handlers, on the memory broker, through the public API.

An async consumer (its handler is ``async def``) runs each job through the
``process_async`` methods of its middleware, outermost first, in the job's
own task. Here: the onion order and what a layer can do to the outcome (and
the ``CancelledError`` of a ``job_timeout``); the refusal, when the consumer
is made, of a layer that wraps only the other kind of handler or whose
methods are of the wrong kind (plugin middleware too); the built-in
``LoggingMiddleware``, ``ErrorReporter``, ``PrometheusMiddleware`` and
``TracingMiddleware`` on async consumers; and a sync handler that returns a
coroutine. Each async test runs served (``async with`` + ``wait_idle_async``)
and drained (``await drain_async()``, and ``drain()`` from a thread).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import gc
import logging
import warnings
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Any, TypeVar

import prometheus_client
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from taskmaster_core import (
    ACK,
    REJECT,
    AsyncPublisher,
    ConfigurationError,
    Consumer,
    ErrorReporter,
    Job,
    JobInfo,
    JobState,
    LoggingMiddleware,
    Middleware,
    Outcome,
    Publisher,
    Reject,
    Retry,
    RetryPolicy,
    hookimpl,
    new_plugin_manager,
)
from taskmaster_core.contrib.opentelemetry import TracingMiddleware
from taskmaster_core.contrib.prometheus import PrometheusMiddleware
from taskmaster_memory import MemoryBroker

T = TypeVar("T")
AsyncCall = Callable[[Job], Awaitable[Outcome]]
SyncCall = Callable[[Job], Outcome]
Drive = Callable[[Consumer], Coroutine[Any, Any, None]]

AT_ONCE = RetryPolicy(base_delay=0, jitter=0)
"""Retries due at once, so a served consumer runs them before it is idle."""

TIMEOUT = 0.1
"""A job_timeout for handlers that never finish on their own (no threshold
is asserted: only the timeout can end them)."""


# -- running consumers ----------------------------------------------------------


async def serve(consumer: Consumer) -> None:
    async with consumer:
        assert await consumer.wait_idle_async()


async def drain(consumer: Consumer) -> None:
    await consumer.drain_async()


async def drain_in_a_thread(consumer: Consumer) -> None:
    """``drain()``, the sync call, of an async consumer: it runs a loop of its own."""
    await asyncio.to_thread(consumer.drain)


DRIVERS = {"served": serve, "drain_async": drain, "drain": drain_in_a_thread}


@pytest.fixture(params=list(DRIVERS))
def drive(request: pytest.FixtureRequest) -> Drive:
    return DRIVERS[request.param]


def run(main: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(main)


@pytest.fixture
def broker() -> Iterator[MemoryBroker]:
    with MemoryBroker(keep_done=True) as broker:
        yield broker


def put(broker: MemoryBroker, *payloads: Any, max_attempts: int = 3) -> list[int]:
    ids = Publisher(broker, plugins=False, max_attempts=max_attempts).put_many("q", list(payloads))
    assert all(i is not None for i in ids)
    return [i for i in ids if i is not None]


def consumer_of(
    broker: MemoryBroker, handler: Any, middleware: list[object], **options: Any
) -> Consumer:
    options.setdefault("plugins", False)
    options.setdefault("retry", AT_ONCE)
    consumer = Consumer(broker, "q", handler, middleware=middleware, **options)
    return consumer


def stored(broker: MemoryBroker, job_id: int) -> JobInfo:
    (job,) = broker.jobs(ids=[job_id])
    return job


async def ack(job: Job) -> Outcome:
    await asyncio.sleep(0)
    return ACK


async def boom(job: Job) -> Outcome:
    await asyncio.sleep(0)
    raise ValueError("boom")


def sync_ack(job: Job) -> Outcome:
    return ACK


class Trace(Middleware):
    """Records entering and leaving, and the outcome it saw, in ``calls``."""

    def __init__(self, name: str, calls: list[str]) -> None:
        self.name = name
        self.calls = calls

    async def process_async(self, job: Job, call_next: AsyncCall) -> Outcome:
        self.calls.append(f"{self.name} in")
        try:
            outcome = await call_next(job)
            self.calls.append(f"{self.name} saw {type(outcome).__name__}")
            return outcome
        except BaseException as exc:
            self.calls.append(f"{self.name} saw {type(exc).__name__}")
            raise
        finally:
            self.calls.append(f"{self.name} out")


# -- 1. order and nesting --------------------------------------------------------

TENANT: contextvars.ContextVar[str] = contextvars.ContextVar("tenant", default="none")


class Tenant(Middleware):
    """Sets a context variable for the handler, as a tenant middleware would."""

    async def process_async(self, job: Job, call_next: AsyncCall) -> Outcome:
        token = TENANT.set(job.headers.get("tenant", "?"))
        try:
            return await call_next(job)
        finally:
            TENANT.reset(token)


class BothKinds(Middleware):
    """Wraps both kinds of handler; an async consumer uses only process_async."""

    def __init__(self, calls: list[str]) -> None:
        self.calls = calls

    def process(self, job: Job, call_next: SyncCall) -> Outcome:
        self.calls.append("both: sync process (wrong!)")
        return call_next(job)

    async def process_async(self, job: Job, call_next: AsyncCall) -> Outcome:
        self.calls.append("both in")
        return await call_next(job)


def test_async_layers_wrap_the_handler_outermost_first_plugins_outside(
    broker: MemoryBroker, drive: Drive
) -> None:
    calls: list[str] = []

    class Plugin:
        @hookimpl
        def taskmaster_middleware(self) -> list[object]:
            return [Trace("plugin", calls)]

    plugins = new_plugin_manager(load_entrypoints=False)
    plugins.register(Plugin())
    Publisher(broker, plugins=False).put("q", "x", headers={"tenant": "acme"})

    async def handler(job: Job) -> Outcome:
        calls.append(f"handler tenant={TENANT.get()}")
        await asyncio.sleep(0)
        return ACK

    middleware: list[object] = [Trace("first", calls), BothKinds(calls), Tenant()]
    middleware.append(Trace("last", calls))
    consumer = consumer_of(broker, handler, middleware, plugins=plugins)
    assert consumer.is_async
    run(drive(consumer))
    assert calls == [
        "plugin in",
        "first in",
        "both in",
        "last in",
        "handler tenant=acme",
        "last saw Ack",
        "last out",
        "first saw Ack",
        "first out",
        "plugin saw Ack",
        "plugin out",
    ]
    assert TENANT.get() == "none"  # set in the job's context only


def test_a_layer_can_change_the_outcome_and_outer_layers_see_the_change(
    broker: MemoryBroker, drive: Drive
) -> None:
    calls: list[str] = []

    class AckToReject(Middleware):
        async def process_async(self, job: Job, call_next: AsyncCall) -> Outcome:
            outcome = await call_next(job)
            return Reject("changed by a layer") if outcome is ACK else outcome

    (job_id,) = put(broker, "x")
    consumer = consumer_of(broker, ack, [Trace("outer", calls), AckToReject()])
    run(drive(consumer))
    assert calls == ["outer in", "outer saw Reject", "outer out"]
    job = stored(broker, job_id)
    assert (job.state, job.attempts, job.last_error) == (JobState.FAILED, 1, "changed by a layer")


def test_a_layer_can_answer_without_calling_the_handler(broker: MemoryBroker, drive: Drive) -> None:
    handled: list[int] = []

    class Gate(Middleware):
        async def process_async(self, job: Job, call_next: AsyncCall) -> Outcome:
            if job.payload == "blocked":
                return REJECT
            return await call_next(job)

    async def handler(job: Job) -> Outcome:
        handled.append(job.id)
        return ACK

    blocked, allowed = put(broker, "blocked", "allowed")
    run(drive(consumer_of(broker, handler, [Gate()])))
    assert handled == [allowed]
    assert stored(broker, blocked).state is JobState.FAILED
    assert stored(broker, allowed).state is JobState.DONE


def test_a_layer_can_catch_the_handlers_exception(broker: MemoryBroker, drive: Drive) -> None:
    calls: list[str] = []
    caught: list[BaseException] = []

    class Forgive(Middleware):
        async def process_async(self, job: Job, call_next: AsyncCall) -> Outcome:
            try:
                return await call_next(job)
            except ValueError as exc:
                caught.append(exc)
                return ACK

    (job_id,) = put(broker, "x")
    run(drive(consumer_of(broker, boom, [Trace("outer", calls), Forgive()])))
    assert [str(exc) for exc in caught] == ["boom"]
    assert caught[0].__traceback__ is not None  # the handler's own exception, raised through
    assert calls == ["outer in", "outer saw Ack", "outer out"]
    job = stored(broker, job_id)
    assert (job.state, job.attempts) == (JobState.DONE, 1)


def test_an_exception_a_layer_raises_is_retried_like_the_handlers(
    broker: MemoryBroker, drive: Drive
) -> None:
    calls: list[str] = []

    class Broken(Middleware):
        async def process_async(self, job: Job, call_next: AsyncCall) -> Outcome:
            await call_next(job)
            raise KeyError("layer broke")

    (job_id,) = put(broker, "x", max_attempts=2)
    run(drive(consumer_of(broker, ack, [Trace("outer", calls), Broken()])))
    assert calls == ["outer in", "outer saw KeyError", "outer out"] * 2
    job = stored(broker, job_id)
    assert (job.state, job.attempts) == (JobState.FAILED, 2)
    assert "KeyError: 'layer broke'" in (job.last_error or "")


class WatchCancel(Middleware):
    """Records each attempt's end as a layer sees it; ``swallow`` turns the
    cancellation into an ACK (the job must still count as timed out)."""

    def __init__(self, seen: list[tuple[int, str]], swallow: bool = False) -> None:
        self.seen = seen
        self.swallow = swallow

    async def process_async(self, job: Job, call_next: AsyncCall) -> Outcome:
        try:
            outcome = await call_next(job)
        except asyncio.CancelledError:
            self.seen.append((job.attempt, "CancelledError"))
            if self.swallow:
                return ACK
            raise
        self.seen.append((job.attempt, type(outcome).__name__))
        return outcome


async def hang_on_first_attempt(job: Job) -> Outcome:
    if job.attempt == 1:
        await asyncio.Event().wait()  # never set: only the job_timeout ends it
    return ACK


@pytest.mark.parametrize("swallow", [False, True], ids=["reraised", "swallowed"])
def test_a_layer_sees_cancelled_error_on_job_timeout_and_the_job_is_retried(
    broker: MemoryBroker, drive: Drive, swallow: bool
) -> None:
    seen: list[tuple[int, str]] = []
    (job_id,) = put(broker, "x", max_attempts=3)
    middleware: list[object] = [WatchCancel(seen, swallow=swallow)]
    consumer = consumer_of(broker, hang_on_first_attempt, middleware, job_timeout=TIMEOUT)
    run(drive(consumer))
    assert seen == [(1, "CancelledError"), (2, "Ack")]
    job = stored(broker, job_id)
    assert (job.state, job.attempts) == (JobState.DONE, 2)


def test_a_job_that_times_out_on_every_attempt_fails_when_they_are_used_up(
    broker: MemoryBroker, drive: Drive
) -> None:
    seen: list[tuple[int, str]] = []

    async def hang(job: Job) -> Outcome:
        await asyncio.Event().wait()
        return ACK

    (job_id,) = put(broker, "x", max_attempts=2)
    consumer = consumer_of(broker, hang, [WatchCancel(seen)], job_timeout=TIMEOUT)
    run(drive(consumer))
    assert seen == [(1, "CancelledError"), (2, "CancelledError")]
    job = stored(broker, job_id)
    assert (job.state, job.attempts) == (JobState.FAILED, 2)
    assert "attempts used up (2/2)" in (job.last_error or "")
    assert f"handler timed out after {TIMEOUT:g}s" in (job.last_error or "")


class AsyncCallable:
    """A handler object whose ``__call__`` is ``async def``."""

    def __init__(self, handled: list[str]) -> None:
        self.handled = handled

    async def __call__(self, job: Job) -> Outcome:
        self.handled.append(f"object {job.payload}")
        return ACK


async def handle_with(handled: list[str], job: Job) -> Outcome:
    handled.append(f"partial {job.payload}")
    return ACK


@pytest.mark.parametrize("kind", ["object", "partial"])
def test_async_callables_and_partials_are_wrapped_by_process_async(
    broker: MemoryBroker, drive: Drive, kind: str
) -> None:
    calls: list[str] = []
    handler: Any = (
        AsyncCallable(calls) if kind == "object" else functools.partial(handle_with, calls)
    )
    put(broker, "x")
    consumer = consumer_of(broker, handler, [Trace("layer", calls)])
    assert consumer.is_async
    run(drive(consumer))
    assert calls == ["layer in", f"{kind} x", "layer saw Ack", "layer out"]


# -- 2. refusals -------------------------------------------------------------------


class SyncOnly(Middleware):
    def process(self, job: Job, call_next: SyncCall) -> Outcome:
        return call_next(job)


class AsyncOnly(Middleware):
    async def process_async(self, job: Job, call_next: AsyncCall) -> Outcome:
        return await call_next(job)


class DuckSyncOnly:
    """Middleware by duck typing (no base class), sync handlers only."""

    def process(self, job: Job, call_next: SyncCall) -> Outcome:
        return call_next(job)


class DuckAsyncOnly:
    async def process_async(self, job: Job, call_next: AsyncCall) -> Outcome:
        return await call_next(job)


class AsyncDefProcess(Middleware):
    async def process(self, job: Job, call_next: Any) -> Any:  # type: ignore[override]
        return await call_next(job)


class DefProcessAsync(Middleware):
    def process_async(self, job: Job, call_next: Any) -> Any:
        return call_next(job)


@pytest.mark.parametrize(
    ("layer", "handler", "kind", "defines", "lacks"),
    [
        (SyncOnly(), ack, "sync", "process", "process_async"),
        (DuckSyncOnly(), ack, "sync", "process", "process_async"),
        (AsyncOnly(), sync_ack, "async", "process_async", "process"),
        (DuckAsyncOnly(), sync_ack, "async", "process_async", "process"),
    ],
    ids=["sync-only-to-async", "duck-sync-only-to-async", "async-only-to-sync", "duck-async"],
)
def test_a_layer_that_wraps_only_the_other_kind_of_handler_is_refused(
    broker: MemoryBroker, layer: object, handler: Any, kind: str, defines: str, lacks: str
) -> None:
    with pytest.raises(ConfigurationError) as refused:
        Consumer(broker, "q", handler, middleware=[layer], plugins=False)
    message = str(refused.value)
    assert type(layer).__name__ in message  # names the layer
    assert f"wraps only {kind} handlers" in message
    assert f"it defines {defines} but not {lacks}" in message
    handler_kind = "a sync (def) handler" if kind == "async" else "an async (async def) handler"
    assert f"this consumer runs {handler_kind}" in message
    assert f"give it a {lacks} method (docs/middleware.md)" in message  # says what to do
    assert "or leave it out of this consumer" in message


@pytest.mark.parametrize("handler", [ack, sync_ack], ids=["async-consumer", "sync-consumer"])
@pytest.mark.parametrize(
    ("layer", "method", "kind"),
    [
        (AsyncDefProcess(), "process", "def (not async def)"),
        (DefProcessAsync(), "process_async", "async def"),
    ],
    ids=["async-def-process", "def-process-async"],
)
def test_a_method_of_the_wrong_kind_is_refused(
    broker: MemoryBroker, handler: Any, layer: object, method: str, kind: str
) -> None:
    with pytest.raises(ConfigurationError) as refused:
        Consumer(broker, "q", handler, middleware=[layer], plugins=False)
    message = str(refused.value)
    assert type(layer).__name__ in message
    assert f"{method} must be a" in message
    assert kind in message


def test_the_refusal_comes_when_the_consumer_is_made_also_by_replace(
    broker: MemoryBroker,
) -> None:
    consumer = Consumer(broker, "q", sync_ack, middleware=[SyncOnly()], plugins=False)
    assert not consumer.is_async
    with pytest.raises(ConfigurationError, match="wraps only sync handlers"):
        consumer.replace(handler=ack)


class SyncOnlyPlugin:
    @hookimpl
    def taskmaster_middleware(self) -> list[object]:
        return [SyncOnly()]


def test_sync_only_plugin_middleware_makes_an_async_consumer_refuse_clearly(
    broker: MemoryBroker,
) -> None:
    plugins = new_plugin_manager(load_entrypoints=False)
    plugins.register(SyncOnlyPlugin(), name="sync-only")
    with pytest.raises(ConfigurationError) as refused:
        Consumer(broker, "q", ack, plugins=plugins)
    message = str(refused.value)
    assert "SyncOnly" in message
    assert "wraps only sync handlers (it defines process but not process_async)" in message
    assert "give it a process_async method" in message
    assert "from plugin 'sync-only'" in message  # which plugin, and how to leave it out
    assert "plugins=False, or TASKMASTER_DISABLE_PLUGINS=sync-only" in message
    # The same plugins serve a sync consumer and a publisher.
    Publisher(broker, plugins=plugins).put("q", "x")
    assert Consumer(broker, "q", sync_ack, plugins=plugins).drain() == 1


# -- 3. LoggingMiddleware ------------------------------------------------------------


async def by_payload(job: Job) -> Any:
    await asyncio.sleep(0)
    if job.payload == "boom":
        raise ValueError("boom")
    return {"ok": ACK, "no": REJECT, "later": Retry(0), "bad": 42}[job.payload]


def test_logging_middleware_logs_start_and_outcome_of_async_jobs(
    broker: MemoryBroker, drive: Drive, caplog: pytest.LogCaptureFixture
) -> None:
    statuses = {"ok": "ack", "no": "reject", "later": "retry", "boom": "failure", "bad": "invalid"}
    ids = dict(zip(statuses, put(broker, *statuses, max_attempts=1), strict=True))
    with caplog.at_level(logging.INFO, logger="taskmaster.jobs"):
        run(drive(consumer_of(broker, by_payload, [LoggingMiddleware()])))
    records = [r for r in caplog.records if r.name == "taskmaster.jobs"]
    assert len(records) == 2 * len(statuses)
    for payload, status in statuses.items():
        job_id = ids[payload]
        start, end = (r for r in records if r.__dict__["job_id"] == job_id)
        assert start.levelno == end.levelno == logging.INFO
        assert start.getMessage() == f"status=start queue=q job={job_id} attempt=1"
        assert (start.__dict__["queue"], start.__dict__["attempt"]) == ("q", 1)
        message = end.getMessage()
        assert message.startswith(f"status={status} queue=q job={job_id} attempt=1 time=")
        assert message.endswith("ms")
        fields = {k: end.__dict__[k] for k in ("queue", "job_id", "attempt", "outcome")}
        assert fields == {"queue": "q", "job_id": job_id, "attempt": 1, "outcome": status}
        assert end.__dict__["elapsed_ms"] >= 0
        assert message.endswith(f"time={end.__dict__['elapsed_ms']:.1f}ms")
        assert end.exc_info is None  # the error is the consumer's to log, once


def test_logging_middleware_logs_a_timed_out_handler_as_a_failure(
    broker: MemoryBroker, drive: Drive, caplog: pytest.LogCaptureFixture
) -> None:
    (job_id,) = put(broker, "x")
    consumer = consumer_of(
        broker, hang_on_first_attempt, [LoggingMiddleware()], job_timeout=TIMEOUT
    )
    with caplog.at_level(logging.INFO, logger="taskmaster.jobs"):
        run(drive(consumer))
    lines = [r.getMessage() for r in caplog.records if r.name == "taskmaster.jobs"]
    assert [line.split(" time=")[0] for line in lines] == [
        f"status=start queue=q job={job_id} attempt=1",
        f"status=failure queue=q job={job_id} attempt=1",
        f"status=start queue=q job={job_id} attempt=2",
        f"status=ack queue=q job={job_id} attempt=2",
    ]


def test_logging_middleware_at_a_disabled_level_logs_nothing_and_passes_through(
    broker: MemoryBroker, drive: Drive, caplog: pytest.LogCaptureFixture
) -> None:
    (job_id,) = put(broker, "ok")
    middleware: list[object] = [LoggingMiddleware(level=logging.DEBUG)]
    with caplog.at_level(logging.INFO, logger="taskmaster.jobs"):
        run(drive(consumer_of(broker, by_payload, middleware)))
    assert [r for r in caplog.records if r.name == "taskmaster.jobs"] == []
    assert stored(broker, job_id).state is JobState.DONE


# -- 4. ErrorReporter ------------------------------------------------------------------


def test_error_reporter_calls_a_sync_callback_and_the_retry_policy_applies(
    broker: MemoryBroker, drive: Drive
) -> None:
    reported: list[tuple[int, int, BaseException]] = []
    (job_id,) = put(broker, "x", max_attempts=2)

    def callback(job: Job, exc: BaseException) -> None:
        reported.append((job.id, job.attempt, exc))

    run(drive(consumer_of(broker, boom, [ErrorReporter(callback)])))
    assert [(i, attempt, repr(exc)) for i, attempt, exc in reported] == [
        (job_id, 1, "ValueError('boom')"),
        (job_id, 2, "ValueError('boom')"),
    ]
    job = stored(broker, job_id)
    assert (job.state, job.attempts) == (JobState.FAILED, 2)
    assert "ValueError: boom" in (job.last_error or "")


def test_error_reporter_awaits_an_async_callback(broker: MemoryBroker, drive: Drive) -> None:
    reported: list[tuple[int, str]] = []
    (job_id,) = put(broker, "x", max_attempts=1)

    async def callback(job: Job, exc: BaseException) -> None:
        await asyncio.sleep(0)  # a real await: it ran to the end only if awaited
        reported.append((job.id, repr(exc)))

    run(drive(consumer_of(broker, boom, [ErrorReporter(callback)])))
    assert reported == [(job_id, "ValueError('boom')")]
    assert stored(broker, job_id).state is JobState.FAILED


def raise_now(job: Job, exc: BaseException) -> None:
    raise OSError("error tracker unreachable")


async def raise_later(job: Job, exc: BaseException) -> None:
    await asyncio.sleep(0)
    raise OSError("error tracker unreachable")


@pytest.mark.parametrize("reject", [False, True], ids=["reraise", "reject"])
@pytest.mark.parametrize("callback", [raise_now, raise_later], ids=["sync", "async"])
def test_a_callback_that_raises_is_logged_and_does_not_change_the_fate(
    broker: MemoryBroker,
    drive: Drive,
    caplog: pytest.LogCaptureFixture,
    callback: Callable[[Job, BaseException], object],
    reject: bool,
) -> None:
    (job_id,) = put(broker, "x", max_attempts=2)
    with caplog.at_level(logging.INFO):
        run(drive(consumer_of(broker, boom, [ErrorReporter(callback, reject=reject)])))
    failures = [r for r in caplog.records if "error callback failed" in r.getMessage()]
    assert failures
    assert failures[0].name == "taskmaster.errors"
    assert failures[0].getMessage() == f"error callback failed for job {job_id} on queue q"
    assert failures[0].exc_info is not None
    assert repr(failures[0].exc_info[1]) == "OSError('error tracker unreachable')"
    job = stored(broker, job_id)
    # reject=True: failed at once; otherwise retried per policy, then failed.
    assert (job.state, job.attempts) == (JobState.FAILED, 1 if reject else 2)
    assert len(failures) == job.attempts
    assert "ValueError: boom" in (job.last_error or "")
    assert "tracker" not in (job.last_error or "")


def test_error_reporter_with_reject_fails_the_job_at_once_like_with_error(
    broker: MemoryBroker, drive: Drive, caplog: pytest.LogCaptureFixture
) -> None:
    reported: list[int] = []

    async def callback(job: Job, exc: BaseException) -> None:
        reported.append(job.id)

    (job_id,) = put(broker, "x", max_attempts=3)
    middleware: list[object] = [LoggingMiddleware(), ErrorReporter(callback, reject=True)]
    with caplog.at_level(logging.INFO, logger="taskmaster"):
        run(drive(consumer_of(broker, boom, middleware)))
    assert reported == [job_id]
    job = stored(broker, job_id)
    assert (job.state, job.attempts) == (JobState.FAILED, 1)
    assert (job.last_error or "").startswith("ValueError: boom\n")
    ours = [r for r in caplog.records if r.name in ("taskmaster.jobs", "taskmaster.errors")]
    assert [(r.name, r.levelname, r.getMessage().split(" time=")[0]) for r in ours] == [
        ("taskmaster.jobs", "INFO", f"status=start queue=q job={job_id} attempt=1"),
        (
            "taskmaster.errors",
            "ERROR",
            f"status=failure queue=q job={job_id} attempt=1 error=ValueError('boom')",
        ),
        ("taskmaster.jobs", "INFO", f"status=reject queue=q job={job_id} attempt=1"),
    ]
    assert ours[1].exc_info is not None and repr(ours[1].exc_info[1]) == "ValueError('boom')"


def never_awaited(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if "never awaited" in str(w.message)]


@pytest.mark.parametrize("threads", [False, True], ids=["drain", "worker-threads"])
def test_an_async_callback_on_a_sync_consumer_is_reported_not_dropped(
    broker: MemoryBroker, caplog: pytest.LogCaptureFixture, threads: bool
) -> None:
    ran: list[int] = []

    async def callback(job: Job, exc: BaseException) -> None:
        ran.append(job.id)  # a sync consumer cannot await it

    def handler(job: Job) -> Outcome:
        raise ValueError("boom")

    (job_id,) = put(broker, "x", max_attempts=1)
    consumer = consumer_of(broker, handler, [ErrorReporter(callback)])
    assert not consumer.is_async
    with (
        caplog.at_level(logging.INFO),
        warnings.catch_warnings(record=True) as caught,
    ):
        warnings.simplefilter("always")
        if threads:
            with consumer:
                assert consumer.wait_idle()
        else:
            assert consumer.drain() == 1
        gc.collect()
    assert never_awaited(caught) == []
    assert ran == []
    (failure,) = [r for r in caplog.records if "error callback failed" in r.getMessage()]
    assert failure.name == "taskmaster.errors"
    assert failure.levelno == logging.ERROR
    assert failure.getMessage() == f"error callback failed for job {job_id} on queue q"
    assert failure.exc_info is not None
    error = failure.exc_info[1]
    assert isinstance(error, ConfigurationError)
    assert "callback is async" in str(error)
    assert "give a sync consumer a def callback" in str(error)
    assert repr(error.__context__) == "ValueError('boom')"  # the handler's error is in the log
    job = stored(broker, job_id)
    assert job.state is JobState.FAILED
    assert "ValueError: boom" in (job.last_error or "")


# -- 5. PrometheusMiddleware ---------------------------------------------------------


def test_prometheus_counts_async_runs_by_outcome(broker: MemoryBroker, drive: Drive) -> None:
    registry = prometheus_client.CollectorRegistry()
    metrics = PrometheusMiddleware(registry=registry)
    running: list[float | None] = []

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(f"taskmaster_{name}", {"queue": "q", **labels})

    async def handler(job: Job) -> Any:
        running.append(value("jobs_in_progress"))
        if job.payload == "hang":
            return await hang_on_first_attempt(job)
        return await by_payload(job)

    Publisher(broker, middleware=[metrics], plugins=False, max_attempts=1).put_many(
        "q", ["ok", "ok", "no", "later", "boom", "bad", "hang"]
    )
    consumer = consumer_of(broker, handler, [metrics], job_timeout=TIMEOUT)
    run(drive(consumer))
    assert value("jobs_published_total") == 7
    processed = {
        outcome: value("jobs_processed_total", outcome=outcome)
        for outcome in ("ack", "reject", "retry", "error", "invalid")
    }
    # a timed-out handler (its task cancelled) counts as an error
    assert processed == {"ack": 2, "reject": 1, "retry": 1, "error": 2, "invalid": 1}
    assert value("job_duration_seconds_count") == 7
    assert value("jobs_in_progress") == 0
    assert running == [1.0] * 7  # one at a time (concurrency=1), counted while running


# -- 6. TracingMiddleware ----------------------------------------------------------------


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return int(span.context.span_id)


def trace_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return int(span.context.trace_id)


def current_span_id() -> int:
    return trace.get_current_span().get_span_context().span_id


def finished(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


def process_span(exporter: InMemorySpanExporter, job_id: int) -> ReadableSpan:
    (span,) = [
        s
        for s in finished(exporter, "process q")
        if (s.attributes or {}).get("messaging.message.id") == str(job_id)
    ]
    return span


@pytest.mark.parametrize("publisher", ["Publisher", "AsyncPublisher"])
def test_trace_context_travels_from_the_put_to_the_async_handler(
    broker: MemoryBroker,
    drive: Drive,
    spans: tuple[TracerProvider, InMemorySpanExporter],
    publisher: str,
) -> None:
    provider, exporter = spans
    tracing = TracingMiddleware(tracer_provider=provider)
    tracer = provider.get_tracer("app")
    in_handler: list[int] = []

    async def handler(job: Job) -> Outcome:
        in_handler.append(current_span_id())
        await asyncio.sleep(0)
        in_handler.append(current_span_id())
        return ACK

    async def main() -> int | None:
        with tracer.start_as_current_span("http request"):
            if publisher == "Publisher":
                job_id = Publisher(broker, middleware=[tracing], plugins=False).put("q", "x")
            else:
                job_id = await AsyncPublisher(broker, middleware=[tracing], plugins=False).put(
                    "q", "x"
                )
        await drive(consumer_of(broker, handler, [tracing]))
        assert not trace.get_current_span().get_span_context().is_valid  # nothing leaked
        return job_id

    job_id = run(main())
    assert job_id is not None
    (request,) = finished(exporter, "http request")
    (publish,) = finished(exporter, "publish q")
    process = process_span(exporter, job_id)
    assert publish.kind is trace.SpanKind.PRODUCER
    assert process.kind is trace.SpanKind.CONSUMER
    assert trace_id(request) == trace_id(publish) == trace_id(process)
    assert publish.parent is not None and publish.parent.span_id == span_id(request)
    assert process.parent is not None and process.parent.span_id == span_id(publish)
    assert in_handler == [span_id(process)] * 2  # the handler runs in its job's span
    assert (process.attributes or {}).get("taskmaster.outcome") == "ack"


def test_concurrent_async_jobs_each_see_their_own_span(
    broker: MemoryBroker, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = spans
    tracing = TracingMiddleware(tracer_provider=provider)
    tracer = provider.get_tracer("app")
    seen: dict[int, list[int]] = {}

    async def main() -> list[int]:
        publisher = AsyncPublisher(broker, middleware=[tracing], plugins=False)
        ids: list[int] = []
        for request in ("request a", "request b"):
            with tracer.start_as_current_span(request):
                job_id = await publisher.put("q", request)
                assert job_id is not None
                ids.append(job_id)
        both_running = asyncio.Event()

        async def handler(job: Job) -> Outcome:
            seen[job.id] = [current_span_id()]
            if len(seen) == 2:
                both_running.set()
            # Both jobs are in flight here at once, on the same loop.
            await asyncio.wait_for(both_running.wait(), timeout=30)
            seen[job.id].append(current_span_id())
            await asyncio.sleep(0)
            seen[job.id].append(current_span_id())
            return ACK

        await serve(consumer_of(broker, handler, [tracing], concurrency=2))
        return ids

    ids = run(main())
    assert sorted(seen) == sorted(ids)
    for job_id in ids:
        process = process_span(exporter, job_id)
        assert seen[job_id] == [span_id(process)] * 3
        (publish,) = [
            s for s in finished(exporter, "publish q") if trace_id(s) == trace_id(process)
        ]
        assert process.parent is not None and process.parent.span_id == span_id(publish)
    first, second = (process_span(exporter, job_id) for job_id in ids)
    assert trace_id(first) != trace_id(second)  # one trace per request


# -- 7. a sync handler that returns a coroutine ------------------------------------------


async def work(job: Job) -> Outcome:
    return ACK


@pytest.mark.parametrize("threads", [False, True], ids=["drain", "worker-threads"])
def test_a_sync_handler_returning_a_coroutine_fails_saying_to_declare_it_async(
    broker: MemoryBroker, caplog: pytest.LogCaptureFixture, threads: bool
) -> None:
    (job_id,) = put(broker, "x", max_attempts=3)
    consumer = consumer_of(broker, lambda job: work(job), [LoggingMiddleware()])
    assert not consumer.is_async
    with (
        caplog.at_level(logging.INFO, logger="taskmaster"),
        warnings.catch_warnings(record=True) as caught,
    ):
        warnings.simplefilter("always")
        if threads:
            with consumer:
                assert consumer.wait_idle()
        else:
            assert consumer.drain() == 1
        gc.collect()
    assert never_awaited(caught) == []
    job = stored(broker, job_id)
    assert (job.state, job.attempts) == (JobState.FAILED, 1)  # not retried: it cannot succeed
    error = job.last_error or ""
    assert "handler returned coroutine" in error
    assert "declare the handler `async def`" in error
    (failed,) = [r for r in caplog.records if r.name == "taskmaster.consumer"]
    assert failed.levelno == logging.ERROR
    assert failed.getMessage().startswith(f"status=failed queue=q job={job_id} attempt=1/3 ")
    assert "declare the handler `async def`" in failed.getMessage()
    statuses = [r.__dict__.get("outcome") for r in caplog.records if r.name == "taskmaster.jobs"]
    assert statuses == [None, "invalid"]


# -- found while writing these tests ---------------------------------------------------


def test_an_async_handler_that_returns_a_coroutine_is_not_told_to_be_async_def(
    broker: MemoryBroker, drive: Drive
) -> None:
    async def forgot_await(job: Job) -> Any:
        return work(job)  # the `await` is missing: the job must fail, with the right advice

    (job_id,) = put(broker, "x", max_attempts=3)
    consumer = consumer_of(broker, forgot_await, [])
    assert consumer.is_async
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run(drive(consumer))
        gc.collect()
    assert never_awaited(caught) == []
    job = stored(broker, job_id)
    assert (job.state, job.attempts) == (JobState.FAILED, 1)
    error = job.last_error or ""
    assert "handler returned coroutine" in error
    # The handler is async def already, on an async consumer: the advice must
    # be to await what it returns, not to declare it async def.
    assert "sync consumer" not in error, error
    assert "declare the handler `async def`" not in error, error


def test_a_context_variable_a_handler_sets_does_not_leak_into_the_next_job(
    broker: MemoryBroker, drive: Drive
) -> None:
    seen: list[str] = []

    async def handler(job: Job) -> Outcome:
        seen.append(TENANT.get())
        TENANT.set(f"job {job.id}")  # not reset: each job runs in a context of its own
        return ACK

    put(broker, "a", "b", "c")

    async def main() -> str:
        await drive(consumer_of(broker, handler, []))
        return TENANT.get()

    after = run(main())
    assert seen == ["none"] * 3
    assert after == "none"


def test_the_span_of_a_timed_out_async_handler_has_an_error_status(
    broker: MemoryBroker, drive: Drive, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = spans
    tracing = TracingMiddleware(tracer_provider=provider)
    (job_id,) = put(broker, "x", max_attempts=3)
    consumer = consumer_of(broker, hang_on_first_attempt, [tracing], job_timeout=TIMEOUT)
    run(drive(consumer))
    assert stored(broker, job_id).attempts == 2
    timed_out, acked = sorted(
        finished(exporter, "process q"),
        key=lambda s: str((s.attributes or {}).get("taskmaster.attempt")),
    )
    assert (acked.attributes or {}).get("taskmaster.outcome") == "ack"
    # PrometheusMiddleware counts this run as an error; so should the trace.
    assert timed_out.status.status_code is trace.StatusCode.ERROR, (
        timed_out.status,
        timed_out.events,
        timed_out.attributes,
    )
