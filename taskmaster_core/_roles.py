"""The consumer's roles, wired together over one ledger.

``Roles`` builds the ledger, the workers' queue, the runner and the four
roles (fetcher, workers, settler, lease keeper) from a consumer's settings;
it starts nothing (see ``Consumer.start``).
"""

from __future__ import annotations

import queue as _queue
import threading
from collections.abc import Sequence

from ._consumer_settings import ConsumerSettings
from ._fetcher import Fetcher, max_pending
from ._lease_keeper import LeaseKeeper
from ._ledger import Ledger
from ._plugins import SerializerRegistry
from ._runner import Runner
from ._settler import Settler
from ._types import ClaimedJob
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
    ) -> None:
        self.runner = Runner(s.handler, middleware, serializers, s.payload_type, s.context, s.retry)
        self.ledger = ledger = Ledger(max_pending(s.concurrency))
        self.work: _queue.SimpleQueue[ClaimedJob | None] = _queue.SimpleQueue()
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
        self.workers = Workers(
            s.name, ledger, self.runner, self.fetcher, self.work, self.stopping, spawn
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
            job_timeout=s.job_timeout,
            replace_worker=self.workers.add,
            stopping=self.stopping,
        )
