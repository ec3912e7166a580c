"""The consumer's roles, wired together over one ledger.

``Roles`` builds the ledger, the workers' queue, the runner and the four
roles (fetcher, workers, settler, lease keeper) from a consumer's settings;
it starts nothing (see ``Consumer.start``).
"""

from __future__ import annotations

import queue as _queue
import threading
from collections.abc import Callable, Sequence

from ._async_workers import AsyncWorkers, Inbox
from ._consumer_settings import ConsumerSettings
from ._fetcher import Fetcher, WorkQueue, max_pending
from ._lease_keeper import LeaseKeeper
from ._ledger import Ledger
from ._plugins import SerializerRegistry
from ._runner import Runner
from ._settler import Settler
from ._workers import Spawn, Workers

__all__ = ["Roles"]


class Roles:
    """One consumer's ledger and roles (see the module docstring)."""

    def __init__(
        self,
        s: ConsumerSettings,
        middleware: Sequence[object],
        serializers: SerializerRegistry,
        stopping: threading.Event,
        spawn: Spawn,
        failed: Callable[..., None],
    ) -> None:
        self.runner = runner = Runner(
            s.handler,
            middleware,
            serializers,
            s.payload_type,
            s.context,
            s.retry,
            s.job_timeout,
        )
        self.ledger = ledger = Ledger(max_pending(s.concurrency))
        self.work: WorkQueue = Inbox() if runner.is_async else _queue.SimpleQueue()
        self.stopping = stopping
        """Set when the consumer begins to stop: no more claims, no more starts."""
        self.fetcher = Fetcher(
            s.name,
            s.broker,
            s.queues,
            concurrency=s.concurrency,
            prefetch=s.prefetch,
            lease=s.lease,
            poll_interval=s.poll_interval,
            ledger=ledger,
            work=self.work,
            stopping=self.stopping,
        )
        self.workers: Workers | AsyncWorkers
        if isinstance(self.work, Inbox):
            self.workers = AsyncWorkers(
                s.name,
                ledger,
                runner,
                self.fetcher,
                self.work,
                stopping,
                s.concurrency,
                spawn,
                failed,
            )
        else:
            self.workers = Workers(
                s.name, ledger, runner, self.fetcher, self.work, stopping, spawn, s.concurrency
            )
        self.settler = Settler(
            s.name,
            s.broker,
            ledger,
            self.fetcher.wake,
            flush_interval=s.flush_interval,
            poll_interval=s.poll_interval,
        )
        self.lease_keeper = LeaseKeeper(
            s.name,
            s.broker,
            ledger,
            self.runner,
            lease=s.lease,
            # An async consumer enforces job_timeout on its loop (_async_workers).
            job_timeout=None if runner.is_async else s.job_timeout,
            replace_worker=self._replace_worker,
            stopping=self.stopping,
        )

    def _replace_worker(self) -> None:
        """The watchdog abandoned a stuck worker thread: start another."""
        if isinstance(self.workers, Workers):
            self.workers.add()
