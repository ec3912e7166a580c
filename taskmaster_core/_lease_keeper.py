"""The lease keeper: heartbeats and the job-timeout watchdog, on a small
scheduler.

Every ``lease / 3`` seconds it extends the leases of every held job in one
call; a lease the broker refuses is lost, and the job, if not started yet,
will not be. A ``TaskmasterError`` from the broker is logged and the next
heartbeat tries again; any other exception ends the lease keeper, and the
consumer with it. With ``job_timeout`` set it also settles the jobs whose
handler overran it (retried per policy, or failed on the last attempt) and
starts a fresh worker in place of each stuck one: the stuck thread cannot
be killed, it is left to finish on its own and its result is discarded.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable

from ._broker import Broker
from ._errors import TaskmasterError
from ._ledger import Ledger
from ._runner import Runner, log_outcome, timeout_tolerance

__all__ = ["LeaseKeeper", "Scheduler"]

logger = logging.getLogger("taskmaster.consumer")


class Scheduler:
    """Runs actions at their times, one after another, on the thread that
    calls :meth:`run` (a connection pool's scheduler thread is the model)."""

    def __init__(self) -> None:
        self._queue: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()  # ties run in the order entered
        self._changed = threading.Condition()
        self._stopped = False

    def enter(self, delay: float, action: Callable[[], None]) -> None:
        """Run ``action`` ``delay`` seconds from now."""
        with self._changed:
            heapq.heappush(self._queue, (time.monotonic() + delay, next(self._order), action))
            self._changed.notify()

    def stop(self) -> None:
        """End :meth:`run` after the action under way (the rest never run)."""
        with self._changed:
            self._stopped = True
            self._changed.notify()

    def run(self) -> None:
        while True:
            with self._changed:
                while True:
                    if self._stopped:
                        return
                    wait = self._queue[0][0] - time.monotonic() if self._queue else None
                    if wait is not None and wait <= 0:
                        action = heapq.heappop(self._queue)[2]
                        break
                    self._changed.wait(wait)
            action()


class LeaseKeeper:
    """Keeps held jobs' leases alive and watches for overrunning handlers."""

    def __init__(
        self,
        name: str,
        broker: Broker,
        ledger: Ledger,
        runner: Runner,
        *,
        lease: float,
        job_timeout: float | None,
        replace_worker: Callable[[], None],
        stopping: threading.Event,
    ) -> None:
        self.name = name
        self._broker = broker
        self._ledger = ledger
        self._runner = runner
        self._lease = lease
        self._job_timeout = job_timeout
        self._replace_worker = replace_worker
        self._stopping = stopping
        self._scheduler = Scheduler()

    def run(self) -> None:
        self._scheduler.enter(self._lease / 3, self._beat)
        if self._job_timeout is not None:
            self._scheduler.enter(self._watch_interval(), self._watch)
        self._scheduler.run()

    def stop(self) -> None:
        self._scheduler.stop()

    def _watch_interval(self) -> float:
        assert self._job_timeout is not None
        return timeout_tolerance(self._job_timeout)

    def _beat(self) -> None:
        self.heartbeat()
        self._scheduler.enter(self._lease / 3, self._beat)

    def _watch(self) -> None:
        self.check_timeouts()
        self._scheduler.enter(self._watch_interval(), self._watch)

    def heartbeat(self) -> None:
        """Extend every held job's lease (one call)."""
        leases = self._ledger.leases()
        if not leases:
            return
        deadline = time.monotonic() + self._lease  # taken before the call: errs early
        try:
            refused = self._broker.extend(leases, self._lease)
        except TaskmasterError as exc:
            logger.warning("%s: extending %d leases failed: %s", self.name, len(leases), exc)
            return
        self._ledger.extended(leases, set(refused), deadline)
        if refused:
            logger.warning(
                "%s: leases of jobs %s were lost; those not started yet will not be",
                self.name,
                refused,
            )

    def check_timeouts(self) -> None:
        """Settle the jobs whose handler overran ``job_timeout`` and put a
        fresh worker thread in place of each stuck one."""
        assert self._job_timeout is not None
        limit = self._job_timeout
        reason = f"handler timed out after {limit:g}s"
        overran = self._ledger.take_overrun(
            limit, time.monotonic(), lambda job: self._runner.after_error(job, reason, None)
        )
        for job, settlement in overran:
            level = logging.WARNING if settlement.kind == "retry" else logging.ERROR
            log_outcome(level, job, settlement, None, "; its thread is abandoned and replaced")
            if not self._stopping.is_set():
                self._replace_worker()
