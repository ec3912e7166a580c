"""``AuditMiddleware``: appends one JSON line per put and per handler run,
sync or async (a middleware that wraps both kinds of handler: see
docs/middleware.md)."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from typing import Any

from taskmaster_core import (
    Ack,
    AsyncProcessFn,
    Job,
    Message,
    Middleware,
    Outcome,
    ProcessFn,
    PublishFn,
    Reject,
    Retry,
)

__all__ = ["AUDIT_FILE_ENV", "AuditMiddleware"]

AUDIT_FILE_ENV = "TASKMASTER_AUDIT_FILE"
"""The environment variable naming the audit file."""


def _outcome(outcome: object) -> str:
    if isinstance(outcome, Ack):
        return "ack"
    if isinstance(outcome, Reject):
        return "reject"
    if isinstance(outcome, Retry):
        return "retry"
    return "invalid"


class AuditMiddleware(Middleware):
    """Appends a JSON line to ``path`` for every put and every handler run.

    Each line is written with one ``write`` on a file opened in append mode,
    so lines from many threads and processes do not interleave.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()

    def process(self, job: Job, call_next: ProcessFn) -> Outcome:
        started = time.perf_counter()
        name = "error"
        try:
            outcome: Outcome = call_next(job)
            name = _outcome(outcome)
            return outcome
        finally:
            self._write(self._run_record(job, name, started))

    async def process_async(self, job: Job, call_next: AsyncProcessFn) -> Outcome:
        """The same around an async handler; the file is written in a worker
        thread, so a slow disk never blocks the event loop."""
        started = time.perf_counter()
        name = "error"
        try:
            outcome: Outcome = await call_next(job)
            name = _outcome(outcome)
            return outcome
        finally:
            await asyncio.to_thread(self._write, self._run_record(job, name, started))

    @staticmethod
    def _run_record(job: Job, name: str, started: float) -> dict[str, Any]:
        return {
            "event": "run",
            "queue": job.queue,
            "job": job.id,
            "attempt": job.attempt,
            "outcome": name,
            "elapsed_ms": round((time.perf_counter() - started) * 1000, 1),
        }

    def publish(self, message: Message, call_next: PublishFn) -> None:
        call_next(message)
        self._write({"event": "put", "queue": message.queue, "job": None})

    def _write(self, record: dict[str, Any]) -> None:
        record["pid"] = os.getpid()
        record["at"] = round(time.time(), 3)
        line = json.dumps(record) + "\n"
        with self._lock, open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line)
