"""An application of three consumers, each with its own handler, for the
tests of ``taskmaster worker --queues``:

- ``welcome``: queue ``Welcome Emails``, handler ``send_welcome``;
- ``billing``: queues ``invoices``, ``receipts`` and ``refunds``, handler ``bill``;
- ``reports``: queue ``reports``, handler ``build_report``.

Every handler appends one JSON line — its own name, the job's queue, id and
payload — to the file named by ``QUEUES_APP_LOG`` before it acks, so a test
can tell which handler ran which job (in this process or in a worker
subprocess). ``make_consumers`` is the factory for ``taskmaster worker``.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from taskmaster_core import ACK, Broker, Consumer, Job, Outcome

__all__ = ["QUEUES", "handled", "make_consumers"]

QUEUES = {
    "welcome": ("Welcome Emails",),
    "billing": ("invoices", "receipts", "refunds"),
    "reports": ("reports",),
}
"""Consumer name → the queues it serves."""

_lock = threading.Lock()


def _record(handler: str, job: Job) -> Outcome:
    record = {"handler": handler, "queue": job.queue, "id": job.id, "payload": job.payload}
    line = json.dumps(record)
    with _lock, open(os.environ["QUEUES_APP_LOG"], "a", encoding="utf-8") as log:
        log.write(line + "\n")
    return ACK


def send_welcome(job: Job) -> Outcome:
    return _record("send_welcome", job)


def bill(job: Job) -> Outcome:
    return _record("bill", job)


def build_report(job: Job) -> Outcome:
    return _record("build_report", job)


def make_consumers(broker: Broker) -> list[Consumer]:
    handlers = {"welcome": send_welcome, "billing": bill, "reports": build_report}
    return [
        Consumer(broker, QUEUES[name], handler, concurrency=2, poll_interval=0.1, name=name)
        for name, handler in handlers.items()
    ]


def handled(log: Path) -> list[dict[str, Any]]:
    """What the handlers recorded, in order."""
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]


# -- what a user may point APP at by mistake (tests of the worker's messages) --


def unannotated_handler(job):  # type: ignore[no-untyped-def]  # a handler written without hints
    email = job.payload["email"]
    return _record(f"unannotated_handler {email}", job)


def handler_touching_no_job_attribute(msg):  # type: ignore[no-untyped-def]  # no hints
    """A handler whose first act reads nothing of the job: called with the
    broker, it returns an outcome."""
    return ACK


def failing_factory(broker: Broker) -> list[Consumer]:
    """A factory that fails on its own: its error must reach the user as it is."""
    raise RuntimeError("QUEUES_APP_SMTP_HOST is not set")


def attribute_error_factory(broker: Broker) -> list[Consumer]:
    """A factory with a bug of its own that happens to be an AttributeError."""
    settings = None
    return settings.consumers  # type: ignore[attr-defined, no-any-return]
