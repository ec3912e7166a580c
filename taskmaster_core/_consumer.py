"""The consumer: claims jobs from a broker and runs a handler on worker threads.

Threads (all daemons, named after the consumer):

- the **fetcher** claims jobs in batches sized to the free slots
  (``concurrency`` running + ``prefetch`` waiting) and feeds them to an
  in-process queue. By default ``prefetch`` adapts to the jobs: enough to
  keep the workers busy for about 0.1 s at the handler time measured so far
  (so fast jobs come hundreds to a claim and slow ones one at a time).
  It sleeps until the broker signals new work, a slot frees up, a local
  retry falls due, or ``poll_interval`` passes — so a lost notification
  only delays a job;
- ``concurrency`` **workers** decode each job, run it through the
  middleware chain and the handler, and turn the result into a settlement.
  Nothing a handler does (raise, return garbage, call ``sys.exit``) ends a
  worker thread;
- the **settler** sends settlements back in batches, retrying while the
  broker is unavailable, and extends the leases of every held job (one
  call for all) every ``lease / 3`` seconds.

``stop()`` stops claiming, returns claimed-but-unstarted jobs to the queue,
lets running handlers finish up to a timeout, and flushes their outcomes.

Every run that does not end in ``ACK`` is logged once on
``taskmaster.consumer``, whatever the middleware: INFO for what the handler
asked for (``Retry``, ``Reject``), WARNING for a retry caused by an error,
ERROR for a job that ends failed without the handler asking
(docs/concepts.md, "What the consumer logs").
"""

from __future__ import annotations

import logging
import queue as _queue
import threading
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Self

import pluggy

from ._broker import Broker, Subscription
from ._errors import ConfigurationError, TaskmasterError
from ._job import Job
from ._middleware import compose_process, describe_exception, is_middleware_like
from ._names import check_queue_name
from ._outcomes import Ack, Reject, Retry
from ._plugins import SerializerRegistry, plugin_middleware, resolve_plugin_manager
from ._retry import RetryPolicy
from ._types import ClaimedJob, Lease, Settlement

__all__ = ["Consumer", "Handler"]

logger = logging.getLogger("taskmaster.consumer")

Handler = Callable[[Job], Any]
"""``def handler(job: Job) -> Outcome``."""

_MAX_CLAIM = 500
"""Largest batch one claim asks for."""
_MAX_PREFETCH = 500
"""Most jobs the adaptive prefetch holds waiting."""
_PREFETCH_WINDOW = 0.1
"""The adaptive prefetch holds about this many seconds of work per worker."""
_INITIAL_JOB_SECONDS = 0.01
"""Handler time assumed before any was measured."""
_SMOOTHING = 0.05
"""Weight of the newest handler time in the running average."""
_MAX_BACKOFF = 5.0
"""Cap on the wait between attempts to reach a failing broker."""
_JOIN_SLICE = 0.05
"""How often a stopping consumer checks for ``hurry()`` while it waits."""
_DUE_SLACK = 0.002
"""Added to a local retry's due time so the claim does not come a hair early."""


class Consumer:
    """Runs ``handler`` for jobs of ``queues`` with ``concurrency`` worker threads.

    Use it as a context manager, or call ``start()`` and ``stop()``.
    ``context`` is handed to every job as ``job.context`` (the handler's
    dependencies); ``payload_type`` decodes payloads into that type (a job
    whose payload does not fit fails with a clear error, the worker lives).
    """

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
        names = [queues] if isinstance(queues, str) else list(queues)
        if not names or not all(isinstance(q, str) and q for q in names):
            raise ConfigurationError(f"queues must be non-empty strings, got {queues!r}")
        for queue in names:  # a name no job can carry would wait forever
            check_queue_name(queue)
        if not callable(handler):
            raise ConfigurationError(f"handler must be callable, got {handler!r}")
        if not isinstance(concurrency, int) or concurrency < 1:
            raise ConfigurationError(f"concurrency must be an int >= 1, got {concurrency!r}")
        if lease <= 0:
            raise ConfigurationError(f"lease must be > 0 seconds, got {lease!r}")
        if poll_interval <= 0:
            raise ConfigurationError(f"poll_interval must be > 0 seconds, got {poll_interval!r}")
        if prefetch is not None and prefetch < 0:
            raise ConfigurationError(f"prefetch must be >= 0, got {prefetch!r}")
        if flush_interval < 0:
            raise ConfigurationError(f"flush_interval must be >= 0, got {flush_interval!r}")
        if job_timeout is not None and job_timeout <= 0:
            raise ConfigurationError(f"job_timeout must be > 0 seconds, got {job_timeout!r}")
        self._options: dict[str, Any] = {
            "concurrency": concurrency,
            "middleware": middleware,
            "context": context,
            "payload_type": payload_type,
            "retry": retry,
            "lease": lease,
            "poll_interval": poll_interval,
            "prefetch": prefetch,
            "flush_interval": flush_interval,
            "job_timeout": job_timeout,
            "plugins": plugins,
            "name": name,
        }
        pm = resolve_plugin_manager(plugins)
        layers = [*plugin_middleware(pm), *middleware]
        for layer in layers:
            if not is_middleware_like(layer):
                raise ConfigurationError(
                    f"{layer!r} is not middleware (it has no process or publish method)"
                )

        self.broker = broker
        self.queues: tuple[str, ...] = tuple(dict.fromkeys(names))
        self.handler = handler
        self.concurrency = concurrency
        self.context = context
        self.payload_type = payload_type
        self.retry = retry if retry is not None else RetryPolicy()
        self.lease = float(lease)
        self.poll_interval = float(poll_interval)
        self.prefetch = prefetch
        """Jobs held beyond the running ones; ``None``: adaptive (see the module docstring)."""
        self.flush_interval = float(flush_interval)
        self.job_timeout = job_timeout
        self.name = name or f"consumer[{','.join(self.queues)}]"
        self._serializers = SerializerRegistry(pm)
        self._process = compose_process(layers, self._call_handler)

        # Seconds a handler takes, smoothed; the adaptive prefetch follows it.
        self._job_seconds = _INITIAL_JOB_SECONDS
        self._capacity = 0
        self._refill_level = 0
        self._resize()
        # Stop claiming while this many outcomes wait to be recorded (the
        # broker is slow or down); the settler wakes the fetcher when it catches up.
        self._max_pending = max(1024, 8 * (concurrency + _MAX_PREFETCH))
        self._throttled = False
        self._lock = threading.Lock()
        self._held: dict[int, Lease] = {}
        # When each held job's lease runs out by our clock (claim or last
        # successful extension + lease); a job is not started past it.
        self._deadlines: dict[int, float] = {}
        self._pending: list[Settlement] = []
        self._settle_signal = threading.Condition(self._lock)
        self._wake = threading.Event()
        self._work: _queue.SimpleQueue[ClaimedJob | None] = _queue.SimpleQueue()
        self._next_due: float | None = None
        self._stopping = False
        self._settler_done = False
        self._threads: list[threading.Thread] = []
        self._workers: list[tuple[threading.Thread, _Slot]] = []
        self._worker_count = 0
        self._subscription: Subscription | None = None
        self._started = False
        self._stopped = threading.Event()
        self._hurry = threading.Event()
        self._clean = True
        self.processed = 0
        """Jobs whose outcome has been settled (for progress displays)."""

    def __repr__(self) -> str:
        return f"<Consumer {self.name} concurrency={self.concurrency}>"

    def replace(self, **changes: Any) -> Consumer:
        """A new, unstarted consumer like this one with some settings changed
        (any keyword of the constructor, plus ``broker``, ``queues``, ``handler``)."""
        options = {
            "broker": self.broker,
            "queues": self.queues,
            "handler": self.handler,
            **self._options,
        }
        unknown = set(changes) - set(options)
        if unknown:
            raise ConfigurationError(f"Consumer has no setting(s) {sorted(unknown)}")
        options.update(changes)
        if "queues" in changes and "name" not in changes:
            options["name"] = None
        return Consumer(**options)

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> None:
        """Start the fetcher, settler and worker threads (returns at once)."""
        if self._started:
            raise TaskmasterError(f"{self.name} was already started; a consumer runs once")
        self._started = True
        self._subscription = self.broker.subscribe(self.queues, self._on_signal)
        self._spawn(self._fetch_loop, "fetcher")
        self._spawn(self._settle_loop, "settler")
        for _ in range(self.concurrency):
            self._add_worker()

    def stop(self, timeout: float | None = 30.0) -> bool:
        """Stop: claim no more, return unstarted jobs to the queue, wait up to
        ``timeout`` seconds for running handlers, flush outcomes.

        Returns ``True`` if every handler finished. A handler still running
        after the timeout keeps its job ``running`` until its lease expires
        (it is then retried), since a thread cannot be killed safely. A second
        call while a stop is under way waits for it (see also :meth:`hurry`)."""
        if not self._started:
            return True
        with self._lock:
            already = self._stopping
            self._stopping = True
        if already:
            self._stopped.wait(timeout)
            return self._clean
        deadline = None if timeout is None else time.monotonic() + timeout
        self._wake.set()
        if self._subscription is not None:
            self._subscription.close()
        self._join(self._threads[0], deadline)  # the fetcher
        self._return_unstarted()
        with self._lock:
            workers = [thread for thread, _ in self._workers]
        for _ in workers:
            self._work.put(None)  # one stop sentinel per worker
        for worker in workers:
            self._join(worker, deadline)
        busy = [w.name for w in workers if w.is_alive()]
        self._return_unstarted()  # anything a worker left behind as it stopped
        with self._lock:
            self._settler_done = True
            self._settle_signal.notify()
        self._threads[1].join(_remaining(deadline, minimum=1.0))
        self._clean = not busy
        self._stopped.set()
        if busy:
            logger.warning(
                "%s stopped with %d handler(s) still running: %s", self.name, len(busy), busy
            )
        return self._clean

    def hurry(self) -> None:
        """Make a ``stop()`` under way stop waiting for running handlers now
        (unstarted jobs are still returned and finished outcomes flushed)."""
        self._hurry.set()

    def _join(self, thread: threading.Thread, deadline: float | None) -> None:
        while thread.is_alive() and not self._hurry.is_set():
            remaining = _remaining(deadline)
            if remaining is not None and remaining <= 0:
                return
            thread.join(_JOIN_SLICE if remaining is None else min(_JOIN_SLICE, remaining))

    def run(self) -> None:
        """Start and block until ``stop()`` is called from another thread."""
        if not self._started:
            self.start()
        self._stopped.wait()

    def wait_stopped(self, timeout: float | None = None) -> bool:
        return self._stopped.wait(timeout)

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

    @property
    def workers_alive(self) -> int:
        """Worker threads alive and not abandoned (a stuck one is replaced)."""
        with self._lock:
            return sum(thread.is_alive() for thread, _ in self._workers)

    @property
    def held(self) -> int:
        """Jobs claimed and not yet settled (waiting or running)."""
        return len(self._held)

    def _add_worker(self) -> None:
        """Start one more worker thread (at start, and to replace a stuck one)."""
        slot = _Slot()
        self._worker_count += 1
        thread = self._spawn(lambda: self._work_loop(slot), f"worker-{self._worker_count}")
        with self._lock:
            self._workers.append((thread, slot))

    def _spawn(self, target: Callable[[], None], role: str) -> threading.Thread:
        thread = threading.Thread(target=target, name=f"{self.name}-{role}", daemon=True)
        self._threads.append(thread)
        thread.start()
        return thread

    def _on_signal(self, queue: str | None) -> None:
        self._wake.set()

    # -- fetcher -----------------------------------------------------------

    def _resize(self) -> None:
        """Set how many jobs to hold (running + waiting), and the level at or
        below which to claim again (half of it)."""
        prefetch = self.prefetch
        if prefetch is None:
            per_worker = _PREFETCH_WINDOW / max(self._job_seconds, 1e-6)
            prefetch = min(_MAX_PREFETCH, int(self.concurrency * per_worker))
        self._capacity = self.concurrency + prefetch
        self._refill_level = self._capacity // 2

    def _fetch_loop(self) -> None:
        failures = 0
        while not self._stopping:
            # Clear before looking, so a signal that arrives meanwhile is kept.
            self._wake.clear()
            self._resize()
            with self._lock:
                held = len(self._held)
                backlog = len(self._pending)
            throttled = backlog >= self._max_pending
            self._throttled = throttled
            if held <= self._refill_level and not throttled:
                want = min(self._capacity - held, _MAX_CLAIM)
                deadline = time.monotonic() + self.lease  # taken before: errs early
                try:
                    claimed = self.broker.claim(self.queues, want, self.lease)
                except Exception as exc:
                    failures += 1
                    delay = min(_MAX_BACKOFF, self.poll_interval, 0.05 * 2**failures)
                    logger.warning(
                        "%s: claim failed (%s); retrying in %.2fs", self.name, exc, delay
                    )
                    self._wake.wait(delay)
                    continue
                failures = 0
                if claimed and self._stopping:
                    self._release(claimed)  # stop() began during the claim
                    return
                if claimed:
                    with self._lock:
                        for job in claimed:
                            self._held[job.id] = Lease(job.id, job.token)
                            self._deadlines[job.id] = deadline
                    for job in claimed:
                        self._work.put(job)
                if len(claimed) == want:
                    continue  # probably more waiting: claim again once slots free up
            # Wait for a broker signal, a freed slot (workers signal at the
            # refill level), a local retry falling due, or the poll interval.
            self._wake.wait(self._idle_timeout())

    def _idle_timeout(self) -> float:
        timeout = self.poll_interval
        due = self._next_due
        if due is not None:
            until = due - time.monotonic()
            if until <= timeout:
                self._next_due = None
                timeout = max(0.0, until)
        return timeout

    def _return_unstarted(self) -> None:
        unstarted: list[ClaimedJob] = []
        while True:
            try:
                item = self._work.get_nowait()
            except _queue.Empty:
                break
            if item is not None:
                unstarted.append(item)
        self._release(unstarted)

    def _release(self, unstarted: list[ClaimedJob]) -> None:
        if not unstarted:
            return
        leases = [Lease(job.id, job.token) for job in unstarted]
        with self._lock:
            for job in unstarted:
                self._held.pop(job.id, None)
                self._deadlines.pop(job.id, None)
        try:
            self.broker.release(leases)
        except Exception:
            logger.exception(
                "%s: could not return %d unstarted jobs; they run again when their lease expires",
                self.name,
                len(leases),
            )

    # -- workers -----------------------------------------------------------

    def _work_loop(self, slot: _Slot) -> None:
        work = self._work
        lock = self._lock
        held = self._held
        pending = self._pending
        deadlines = self._deadlines
        clock = time.perf_counter
        while True:
            claimed = work.get()
            if claimed is None:
                return
            if self._stopping:
                work.put(claimed)  # not started: stop() returns it to the queue
                return
            now = time.monotonic()
            if deadlines.get(claimed.id, 0.0) <= now:
                self._give_up(claimed)
                continue
            slot.started = now
            slot.job = claimed
            began = clock()
            settlement, error, level = self._execute(claimed)
            self._job_seconds += (clock() - began - self._job_seconds) * _SMOOTHING
            with lock:
                if slot.abandoned:
                    return  # timed out: the watchdog settled (and logged) the job, replaced us
                slot.job = None
                held.pop(claimed.id, None)
                deadlines.pop(claimed.id, None)
                pending.append(settlement)
                if len(pending) == 1:
                    self._settle_signal.notify()
                if len(held) == self._refill_level:
                    self._wake.set()
            if level:
                _log_outcome(level, claimed, settlement, error)

    def _give_up(self, claimed: ClaimedJob) -> None:
        """A waiting job whose lease ran out (this process was frozen, or the
        heartbeat failed) may already be someone else's: do not start it.
        Hand it back (refused if it was reclaimed meanwhile)."""
        logger.warning(
            "%s: not starting job %s on queue %s: its lease ran out while it waited",
            self.name,
            claimed.id,
            claimed.queue,
        )
        self._release([claimed])

    def _execute(self, claimed: ClaimedJob) -> tuple[Settlement, BaseException | None, int]:
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
            payload = serializer.loads(claimed.payload, self.payload_type)
        except Exception as exc:
            # Middleware never sees this job (there is no payload to hand it).
            return self._fail(claimed, f"cannot decode payload: {exc}"), exc, logging.ERROR
        job = Job(claimed, payload, self.context)
        try:
            outcome = self._process(job)
        except BaseException as exc:
            settlement = self._after_error(claimed, describe_exception(exc), None)
            level = logging.WARNING if settlement.kind == "retry" else logging.ERROR
            return settlement, exc, level
        if outcome.__class__ is Ack:
            return Settlement(id=claimed.id, token=claimed.token, kind="ack"), None, 0
        if isinstance(outcome, Reject):
            return self._fail(claimed, outcome.reason), None, logging.INFO
        if isinstance(outcome, Retry):
            settlement = self._after_error(claimed, outcome.reason, outcome.delay)
            return settlement, None, logging.INFO if settlement.kind == "retry" else logging.ERROR
        error = (
            f"handler returned {outcome!r} ({type(outcome).__name__}); "
            "expected ACK, REJECT, Reject(reason) or Retry(delay)"
        )
        return (
            self._fail(claimed, error),
            TaskmasterError(f"job {claimed.id}: {error}"),
            logging.ERROR,
        )

    @staticmethod
    def _fail(claimed: ClaimedJob, error: str) -> Settlement:
        return Settlement(id=claimed.id, token=claimed.token, kind="fail", error=error)

    def drain(self, *, raise_errors: bool = False, max_jobs: int | None = None) -> int:
        """Run jobs that are ready now in the calling thread, one at a time, until
        none is ready (or ``max_jobs`` ran); return how many ran. For tests:
        no threads, no waiting. A retry that is due at once runs again within
        the same call. With ``raise_errors`` the first handler exception (or
        undecodable payload, or bad return value) is raised after its outcome
        is recorded, and the other claimed jobs are returned to the queue."""
        if self._started:
            raise TaskmasterError(f"{self.name} is running; drain() is for a stopped consumer")
        ran = 0
        while max_jobs is None or ran < max_jobs:
            want = 50 if max_jobs is None else min(50, max_jobs - ran)
            claimed = self.broker.claim(self.queues, want, self.lease)
            if not claimed:
                break
            for index, job in enumerate(claimed):
                settlement, error, level = self._execute(job)
                if level:
                    _log_outcome(level, job, settlement, error)
                self.broker.settle([settlement])
                ran += 1
                if raise_errors and error is not None:
                    rest = claimed[index + 1 :]
                    if rest:
                        self.broker.release([Lease(j.id, j.token) for j in rest])
                    raise error
        return ran

    def _call_handler(self, job: Job) -> Any:
        return self.handler(job)

    def _after_error(self, claimed: ClaimedJob, error: str, delay: float | None) -> Settlement:
        if claimed.attempt >= claimed.max_attempts:
            used = f"attempts used up ({claimed.attempt}/{claimed.max_attempts}): {error}"
            return self._fail(claimed, used)
        wait = self.retry.delay(claimed.attempt) if delay is None else delay
        return Settlement(id=claimed.id, token=claimed.token, kind="retry", error=error, delay=wait)

    # -- settler -----------------------------------------------------------

    def _settle_loop(self) -> None:
        interval = self.lease / 3
        next_beat = time.monotonic() + interval
        watch = None if self.job_timeout is None else min(1.0, max(0.05, self.job_timeout / 4))
        next_watch = float("inf") if watch is None else time.monotonic() + watch
        failures = 0
        batch: list[Settlement] = []
        while True:
            with self._lock:
                while not self._pending and not self._settler_done:
                    timeout = min(next_beat, next_watch) - time.monotonic()
                    if timeout <= 0:
                        break
                    self._settle_signal.wait(timeout)
                done = self._settler_done
            if watch is not None and time.monotonic() >= next_watch:
                self._check_timeouts()
                next_watch = time.monotonic() + watch
            if self.flush_interval and not done:
                time.sleep(self.flush_interval)
            with self._lock:
                if self._pending:
                    batch.extend(self._pending)
                    self._pending.clear()
            if batch:
                try:
                    refused = self.broker.settle(batch)
                except Exception as exc:
                    failures += 1
                    if done and failures > 3:
                        logger.error(
                            "%s: could not record %d outcomes (%s); those jobs run again "
                            "when their lease expires",
                            self.name,
                            len(batch),
                            exc,
                        )
                        return
                    delay = min(_MAX_BACKOFF, 0.05 * 2**failures)
                    logger.warning(
                        "%s: recording %d outcomes failed (%s); retrying in %.2fs",
                        self.name,
                        len(batch),
                        exc,
                        delay,
                    )
                    time.sleep(delay)
                    continue
                failures = 0
                if self._throttled:
                    self._wake.set()
                self._note_retries(batch)
                if refused:
                    logger.warning(
                        "%s: outcomes of jobs %s were refused: their lease was lost "
                        "and another worker may have run them",
                        self.name,
                        refused,
                    )
                self.processed += len(batch)
                batch = []
            if time.monotonic() >= next_beat:
                self._heartbeat()
                next_beat = time.monotonic() + interval
            if done:
                with self._lock:
                    if not self._pending:
                        return

    def _check_timeouts(self) -> None:
        """Settle the jobs whose handler overran ``job_timeout`` (retried per
        policy, or failed on the last attempt) and put a fresh worker thread
        in place of each stuck one. The stuck thread cannot be killed: it is
        left to finish on its own, and its result is discarded."""
        assert self.job_timeout is not None
        limit = self.job_timeout
        now = time.monotonic()
        overran: list[tuple[ClaimedJob, Settlement]] = []
        with self._lock:
            for thread, slot in list(self._workers):
                job = slot.job
                if job is None or now - slot.started <= limit:
                    continue
                slot.abandoned = True
                self._workers.remove((thread, slot))
                self._held.pop(job.id, None)
                self._deadlines.pop(job.id, None)
                settlement = self._after_error(job, f"handler timed out after {limit:g}s", None)
                self._pending.append(settlement)
                overran.append((job, settlement))
        for job, settlement in overran:
            level = logging.WARNING if settlement.kind == "retry" else logging.ERROR
            _log_outcome(level, job, settlement, None, "; its thread is abandoned and replaced")
            if not self._stopping:
                self._add_worker()

    def _note_retries(self, batch: list[Settlement]) -> None:
        """Wake the fetcher when a retry this consumer just recorded falls due,
        instead of leaving it to the next poll."""
        soonest = min((s.delay for s in batch if s.kind == "retry"), default=None)
        if soonest is None or soonest >= self.poll_interval:
            return
        due = time.monotonic() + soonest + _DUE_SLACK
        current = self._next_due
        if current is None or due < current:
            self._next_due = due
            self._wake.set()  # let the fetcher shorten its wait

    def _heartbeat(self) -> None:
        with self._lock:
            leases = list(self._held.values())
        if not leases:
            return
        deadline = time.monotonic() + self.lease  # taken before the call: errs early
        try:
            refused = self.broker.extend(leases, self.lease)
        except Exception as exc:
            logger.warning("%s: extending %d leases failed: %s", self.name, len(leases), exc)
            return
        lost = set(refused)
        with self._lock:
            deadlines = self._deadlines
            for lease in leases:
                if lease.id in deadlines:
                    deadlines[lease.id] = 0.0 if lease.id in lost else deadline
        if refused:
            logger.warning(
                "%s: leases of jobs %s were lost; those not started yet will not be",
                self.name,
                refused,
            )


class _Slot:
    """What one worker thread is running, for the job-timeout watchdog."""

    __slots__ = ("abandoned", "job", "started")

    def __init__(self) -> None:
        self.job: ClaimedJob | None = None
        self.started = 0.0
        self.abandoned = False


def _log_outcome(
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


def _remaining(deadline: float | None, minimum: float = 0.0) -> float | None:
    if deadline is None:
        return None
    return max(minimum, deadline - time.monotonic())
