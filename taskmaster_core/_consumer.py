"""The consumer: claims jobs from a broker and runs a handler on worker
threads, or, for an ``async def`` handler, as tasks on an event loop.

``Consumer`` is the lifecycle only (start, stop, hurry, drain, replace,
wait_idle); the work is done by small roles over one ledger (``_ledger``),
each on its own thread (all daemons, named after the consumer):

- the **fetcher** (``_fetcher``) claims jobs in batches sized to the free
  slots and feeds them to the workers' queue;
- ``concurrency`` **workers** (``_workers``, running each job with
  ``_runner``) decode it, run it through the middleware chain and the
  handler, and record the outcome. Nothing a handler does (raise, return
  garbage, call ``sys.exit``) ends a worker thread;
- the **settler** (``_settler``) sends the outcomes back in batches;
- the **lease keeper** (``_lease_keeper``) extends the leases of every held
  job (one call for all) every ``lease / 3`` seconds, and is the
  ``job_timeout`` watchdog.

An async consumer has the same fetcher, settler and lease keeper threads;
only the workers differ: ``_async_workers`` runs the jobs on ``concurrency``
worker tasks on an event loop (the application's, or one of the consumer's
own), and enforces ``job_timeout`` there.

Supervision: if a role thread dies of an exception (a bug, or a broker
raising something other than a ``TaskmasterError``), the consumer logs it
with its traceback, marks itself unhealthy (``healthy``, ``error``) and
stops as ``stop()`` does — it never runs on half-dead.

``stop()`` stops claiming, returns claimed-but-unstarted jobs to the queue,
lets running handlers finish up to a timeout, and flushes their outcomes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Self

import pluggy

from ._async_workers import AsyncWorkers
from ._broker import Broker, Subscription
from ._consumer_settings import ConsumerSettings, Setting
from ._errors import ConfigurationError, TaskmasterError
from ._idle import wait_idle
from ._job import Job
from ._middleware import is_middleware_like
from ._plugins import SerializerRegistry, plugin_middleware, resolve_plugin_manager
from ._retry import RetryPolicy
from ._roles import Roles
from ._runner import drain, drain_async
from ._supervisor import Supervisor
from ._workers import in_own_thread, join_until, remaining

__all__ = ["Consumer", "Handler"]

logger = logging.getLogger("taskmaster.consumer")

_CLAIM_GRACE = 5.0
"""Seconds a stop waits at least for a claim under way to come back, so
that its jobs are returned rather than left ``running`` until their lease
expires."""

Handler = Callable[[Job], Any]
"""``def handler(job: Job) -> Outcome`` or ``async def handler(job: Job) -> Outcome``."""


class Consumer:
    """Runs ``handler`` for jobs of ``queues``, ``concurrency`` at a time: on
    worker threads, or, for an ``async def`` handler, as tasks on an event
    loop (``async with`` runs them on yours; see docs/async.md).

    Use it as a context manager, or call ``start()`` and ``stop()``.
    ``context`` is handed to every job as ``job.context`` (the handler's
    dependencies); ``payload_type`` decodes payloads into that type (a job
    whose payload does not fit fails with a clear error, the worker lives).
    """

    broker = Setting[Broker]()
    queues = Setting[tuple[str, ...]]()
    handler = Setting[Handler]()
    concurrency = Setting[int]()
    context = Setting[Any]()
    payload_type = Setting[Any]()
    retry = Setting[RetryPolicy]()
    lease = Setting[float]()
    poll_interval = Setting[float]()
    prefetch = Setting[int | None]()
    """Jobs held beyond the running ones; ``None``: adaptive (see ``_fetcher``)."""
    flush_interval = Setting[float]()
    job_timeout = Setting[float | None]()
    name = Setting[str]()

    def __init__(
        self,
        broker: Broker,
        queues: str | Sequence[str],
        handler: Handler,
        *,
        concurrency: int = 1,
        middleware: Sequence[object] = (),
        context: Any = None,
        payload_type: Any = None,
        retry: RetryPolicy | None = None,
        lease: float = 30.0,
        poll_interval: float = 1.0,
        prefetch: int | None = None,
        flush_interval: float = 0.005,
        job_timeout: float | None = None,
        plugins: bool | pluggy.PluginManager = True,
        name: str | None = None,
    ) -> None:
        settings = ConsumerSettings(
            broker=broker,
            queues=queues,  # type: ignore[arg-type]  # normalised to a tuple
            handler=handler,
            concurrency=concurrency,
            middleware=middleware,
            context=context,
            payload_type=payload_type,
            retry=RetryPolicy() if retry is None else retry,
            lease=lease,
            poll_interval=poll_interval,
            prefetch=prefetch,
            flush_interval=flush_interval,
            job_timeout=job_timeout,
            plugins=plugins,
            name=name or "",
        )
        pm = resolve_plugin_manager(plugins)
        layers = [*plugin_middleware(pm), *middleware]
        for layer in layers:
            if not is_middleware_like(layer):
                raise ConfigurationError(
                    f"{layer!r} is not middleware (it has no process or publish method)"
                )
        self._settings = settings
        self._stopping = threading.Event()
        self._supervisor = Supervisor(settings.name, self._stopping, self.stop)
        roles = Roles(
            settings,
            layers,
            SerializerRegistry(pm),
            self._stopping,
            self._supervisor.spawn,
            self._supervisor.failed,
        )
        self._runner, self._ledger, self._work = roles.runner, roles.ledger, roles.work
        self._fetcher, self._workers = roles.fetcher, roles.workers
        self._settler, self._lease_keeper = roles.settler, roles.lease_keeper
        self._threads: dict[str, threading.Thread] = {}
        """The fetcher, settler and lease keeper by role (workers: ``_workers``)."""
        self.is_async = self._runner.is_async
        """Whether the handler is ``async def`` (its jobs run as tasks on an
        event loop, see docs/async.md)."""
        self._subscription: Subscription | None = None
        self._lock = threading.Lock()  # guards the lifecycle fields below
        self._started = False
        self._spawned = threading.Event()
        self._stopped = threading.Event()
        self._hurry = threading.Event()
        self._clean = True

    def __repr__(self) -> str:
        return f"<Consumer {self.name} concurrency={self.concurrency}>"

    def replace(self, **changes: Any) -> Consumer:
        """A new, unstarted consumer like this one with some settings changed
        (any keyword of the constructor, plus ``broker``, ``queues``, ``handler``)."""
        unknown = set(changes) - {field.name for field in dataclasses.fields(ConsumerSettings)}
        if unknown:
            raise ConfigurationError(f"Consumer has no setting(s) {sorted(unknown)}")
        if "queues" in changes and "name" not in changes:
            changes["name"] = ""  # named after its new queues
        settings = dataclasses.replace(self._settings, **changes)
        return Consumer(**{f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)})

    @property
    def processed(self) -> int:
        """Jobs whose outcome has been settled (for progress displays)."""
        return self._ledger.processed

    @property
    def held(self) -> int:
        """Jobs claimed and not yet settled (waiting or running)."""
        return self._ledger.held

    @property
    def workers_alive(self) -> int:
        """Worker threads alive and not abandoned (a stuck one is replaced);
        for an async consumer, ``concurrency`` while its event loop serves it."""
        return self._workers.alive()

    @property
    def healthy(self) -> bool:
        """``False`` once one of the consumer's threads died of an exception
        (see ``error``); the consumer then stops on its own."""
        return self._supervisor.error is None

    @property
    def error(self) -> BaseException | None:
        """The exception that killed one of the consumer's threads, if any."""
        return self._supervisor.error

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> None:
        """Start the fetcher, settler, lease keeper and worker threads (returns
        at once). An async consumer runs its handlers on an event loop of its
        own, on a thread (inside a running loop, ``await start_async()``
        runs them on that loop instead)."""
        self._begin()
        self._start_roles(True)

    async def start_async(self) -> None:
        """``start()`` from asyncio code: an async consumer runs its handlers
        as tasks on the running loop; a sync one, on its worker threads. The
        broker's subscription and the threads are started off the loop.
        Stop it with ``await stop_async()`` (or use ``async with``)."""
        self._begin()
        if isinstance(self._workers, AsyncWorkers):
            self._workers.launch_on(asyncio.get_running_loop())
        try:
            await in_own_thread(self._start_roles, not self.is_async)
        except BaseException:
            await in_own_thread(self.stop, 0, finish=True)  # nothing left half-started
            raise

    def _begin(self) -> None:
        with self._lock:
            if self._started:
                raise TaskmasterError(f"{self.name} was already started; a consumer runs once")
            self._started = True

    def _start_roles(self, launch_workers: bool) -> None:
        try:
            self._subscription = self.broker.subscribe(self.queues, self._fetcher.on_signal)
            for role, target in (
                ("fetcher", self._fetcher.run),
                ("settler", self._settler.run),
                ("lease-keeper", self._lease_keeper.run),
            ):
                self._threads[role] = self._supervisor.spawn(role, target)
            if launch_workers:
                self._workers.launch()
        finally:
            self._spawned.set()  # a stop() begun meanwhile (a role died) may go on

    def stop(self, timeout: float | None = 30.0) -> bool:
        """Stop: claim no more, return unstarted jobs to the queue, wait up to
        ``timeout`` seconds for running handlers, flush outcomes.

        Returns ``True`` if every handler finished. A sync handler still
        running after the timeout keeps its job ``running`` until its lease
        expires (it is then retried), since a thread cannot be killed safely;
        an async handler's task is cancelled then, and its job retried at once
        (``False`` is returned). A second call while a stop is under way waits
        for it (see also :meth:`hurry`). On the event loop that runs its
        handlers, use ``await stop_async()``: this would block that loop."""
        self._refuse_on_loop("stop", "`await consumer.stop_async()` (or `async with consumer:`)")
        with self._lock:
            if not self._started:
                return True
            already = self._stopping.is_set()
            self._stopping.set()
        if already:
            return self._stopped.wait(timeout) and self._clean
        self._spawned.wait()
        deadline = None if timeout is None else time.monotonic() + timeout
        self._fetcher.wake.set()
        if self._subscription is not None:
            self._subscription.close()
        fetcher, settler = self._threads.get("fetcher"), self._threads.get("settler")
        if fetcher is not None:
            join_until(fetcher, deadline, self._hurry)
        self._fetcher.return_unstarted()
        busy = self._workers.finish(deadline, self._hurry)
        if fetcher is not None:  # hurried, it may still be in a claim: its jobs must go back
            fetcher.join(remaining(deadline, minimum=_CLAIM_GRACE))
        self._fetcher.return_unstarted()  # anything a worker or the fetcher left behind
        self._lease_keeper.stop()
        keeper = self._threads.get("lease-keeper")
        if keeper is not None:  # a heartbeat in flight must not outlive stop()
            keeper.join(remaining(deadline, minimum=1.0))
        self._ledger.close()
        if settler is not None:
            settler.join(remaining(deadline, minimum=1.0))
        if settler is None or not settler.is_alive():
            self._report_lost_outcomes()
        self._clean = not busy and not self._workers_cancelled()
        self._stopped.set()
        if busy and self.is_async:
            logger.warning(
                "%s stopped with %d async handler(s) still running: they ignored their "
                "cancellation (their jobs stay running until their lease expires): %s",
                self.name,
                len(busy),
                busy,
            )
        elif busy:
            logger.warning(
                "%s stopped with %d handler(s) still running: %s", self.name, len(busy), busy
            )
        return self._clean

    async def stop_async(self, timeout: float | None = 30.0) -> bool:
        """``stop()`` from asyncio code: waits in a thread, so the loop keeps
        running the handlers that are finishing."""
        return await in_own_thread(self.stop, timeout, finish=True)

    def _refuse_on_loop(self, method: str, instead: str) -> None:
        """A blocking call on the event loop that runs this consumer's
        handlers would wait for handlers that cannot run: refuse it."""
        if self._workers.on_loop_thread():
            raise TaskmasterError(
                f"{self.name}.{method}() was called on the event loop that runs its "
                f"handlers, which it would block: use {instead}"
            )

    def _workers_cancelled(self) -> bool:
        return isinstance(self._workers, AsyncWorkers) and self._workers.cancelled > 0

    def hurry(self) -> None:
        """Make a ``stop()`` under way stop waiting for running handlers now
        (unstarted jobs are still returned and finished outcomes flushed)."""
        self._hurry.set()

    def run(self) -> None:
        """Start and block until ``stop()`` is called from another thread.
        Raises ``TaskmasterError`` if the consumer stopped because one of its
        threads died (the exception is chained)."""
        if not self._started:
            self.start()
        self._stopped.wait()
        if self.error is not None:
            raise TaskmasterError(f"{self.name} stopped: one of its threads died") from self.error

    def wait_stopped(self, timeout: float | None = None) -> bool:
        """Wait until a stop (``stop()``, or the consumer's own after a thread
        died) has finished; return whether it had within ``timeout``."""
        return self._stopped.wait(timeout)

    async def wait_idle_async(
        self, timeout: float | None = 10.0, *, scheduled: bool = False
    ) -> bool:
        """``wait_idle()`` from asyncio code (it waits in a thread)."""
        return await in_own_thread(lambda: self.wait_idle(timeout, scheduled=scheduled))

    def wait_idle(self, timeout: float | None = 10.0, *, scheduled: bool = False) -> bool:
        """Wait until the consumer's queues have no job ready or running and
        the consumer holds none and has recorded every outcome; return
        ``True`` then, ``False`` if ``timeout`` seconds pass first, or the
        consumer stopped or died meanwhile (a consumer never started raises
        ``TaskmasterError``: an empty queue must not pass for done). Scheduled
        jobs (``run_at`` in the future, retries waiting out their delay among
        them) do not count
        unless ``scheduled`` is true. It polls ``broker.stats()`` (see
        ``_idle``): for tests and scripts, not for a hot path."""
        self._refuse_on_loop("wait_idle", "`await consumer.wait_idle_async()`")
        if not self._started:
            raise TaskmasterError(
                f"{self.name} was never started; wait_idle() waits for a running consumer "
                "(inside `with consumer:` or after start(), or `async with consumer:`; "
                "drain() and drain_async() run jobs without starting it)"
            )
        return wait_idle(
            self.broker,
            self.queues,
            self._ledger,
            lambda: self._stopped.is_set() or self.error is not None,
            timeout,
            scheduled,
        )

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        await self.start_async()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop_async()

    def drain(self, *, raise_errors: bool = False, max_jobs: int | None = None) -> int:
        """Run jobs that are ready now in the calling thread, one at a time, until
        none is ready (or ``max_jobs`` ran); return how many ran. For tests:
        no threads, no waiting. A retry that is due at once runs again within
        the same call. With ``raise_errors`` the first handler exception (or
        undecodable payload, or bad return value) is raised after its outcome
        is recorded, and the other claimed jobs are returned to the queue."""
        self._check_drain()
        if self.is_async:
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                return asyncio.run(self.drain_async(raise_errors=raise_errors, max_jobs=max_jobs))
            raise TaskmasterError(
                f"{self.name}: drain() of an async consumer was called inside a running event "
                "loop, which it cannot use from here: use `await consumer.drain_async()`"
            )
        return drain(self._runner, self.broker, self.queues, self.lease, raise_errors, max_jobs)

    async def drain_async(self, *, raise_errors: bool = False, max_jobs: int | None = None) -> int:
        """``drain()`` from asyncio code: an async handler is awaited on the
        running loop (the broker is called directly: for tests on the memory
        broker); a sync consumer's drain runs in a thread."""
        self._check_drain()
        if not self.is_async:
            return await asyncio.to_thread(self.drain, raise_errors=raise_errors, max_jobs=max_jobs)
        return await drain_async(
            self._runner, self.broker, self.queues, self.lease, raise_errors, max_jobs
        )

    def _check_drain(self) -> None:
        if self._started:
            raise TaskmasterError(f"{self.name} is running; drain() is for a stopped consumer")

    # -- stopping --------------------------------------------------------------

    def _report_lost_outcomes(self) -> None:
        """Outcomes left over because the settler died (or gave up)."""
        lost = self._ledger.take_outcomes()
        if lost:
            logger.error(
                "%s: %d outcomes were not recorded; those jobs run again when their lease expires",
                self.name,
                len(lost),
            )
