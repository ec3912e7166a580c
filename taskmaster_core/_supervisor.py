"""Supervision of a consumer's threads: none dies quietly.

Every role thread (fetcher, settler, lease keeper, workers) runs under
:meth:`Supervisor.spawn`. If one dies of an exception — a bug, or a broker
raising something other than a ``TaskmasterError`` — the supervisor logs it
once with its traceback and the role's name, keeps the first such exception
as the consumer's ``error``, and has the consumer stop as ``stop()`` does
(from a thread of its own, since the dying thread may be one ``stop()``
waits for). A consumer never runs on half-dead.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

__all__ = ["Supervisor"]

logger = logging.getLogger("taskmaster.consumer")


class Supervisor:
    """Starts a consumer's threads and stops the consumer when one dies."""

    def __init__(self, name: str, stopping: threading.Event, stop: Callable[[], object]) -> None:
        self._name = name
        self._stopping = stopping
        self._stop = stop
        self._lock = threading.Lock()
        self.error: BaseException | None = None
        """The exception that killed the first thread to die, if any."""

    def spawn(self, role: str, target: Callable[[], None]) -> threading.Thread:
        """Start ``target`` on a supervised daemon thread named after the role."""
        thread = threading.Thread(
            target=self._supervised, args=(role, target), name=f"{self._name}-{role}", daemon=True
        )
        thread.start()
        return thread

    def _supervised(self, role: str, target: Callable[[], None]) -> None:
        try:
            target()
        except BaseException as exc:
            self.failed(role, exc, "thread")

    def failed(self, role: str, exc: BaseException, what: str, *, why: str = "") -> None:
        """``role``'s ``what`` (its thread, or the task serving async
        handlers) died of ``exc``: log it, keep it as the error, and stop the
        consumer. ``why`` replaces "died of an unexpected error" for an end
        that is not a bug (the application's loop ended)."""
        with self._lock:
            if self.error is None:
                self.error = exc
        logger.error(
            "%s: its %s %s %s; the consumer stops",
            self._name,
            role,
            what,
            why or "died of an unexpected error",
            exc_info=None if why else exc,
            extra={"role": role},
        )
        if not self._stopping.is_set():
            # Not a daemon: an interpreter exiting meanwhile (the app's loop
            # ended without a stop) waits for the outcomes to be flushed.
            threading.Thread(target=self._stop, name=f"{self._name}-stopper").start()
