"""Small builders shared by the contract tests (and handy in a broker's own tests)."""

from __future__ import annotations

from typing import Any

import msgspec

from .._broker import Broker
from .._types import ClaimedJob, JobInfo, NewJob, Settlement

__all__ = ["ack", "fail", "info", "new_job", "put_one", "retry"]


def new_job(queue: str = "q", payload: Any = None, **fields: Any) -> NewJob:
    """A JSON-encoded ``NewJob`` (``{"n": 1}`` unless a payload is given)."""
    data = msgspec.json.encode(payload if payload is not None else {"n": 1})
    return NewJob(queue=queue, payload=data, serializer="json", **fields)


def put_one(broker: Broker, queue: str = "q", payload: Any = None, **fields: Any) -> int:
    """Put one job and return its id."""
    (job_id,) = broker.put([new_job(queue, payload, **fields)])
    assert job_id is not None
    return job_id


def info(broker: Broker, job_id: int) -> JobInfo | None:
    """The stored job, or ``None`` if there is none with that id."""
    found = broker.jobs(ids=[job_id])
    return found[0] if found else None


def ack(job: ClaimedJob) -> Settlement:
    return Settlement(id=job.id, token=job.token, kind="ack")


def fail(job: ClaimedJob, error: str = "boom") -> Settlement:
    return Settlement(id=job.id, token=job.token, kind="fail", error=error)


def retry(job: ClaimedJob, delay: float = 0.0, error: str = "again") -> Settlement:
    return Settlement(id=job.id, token=job.token, kind="retry", error=error, delay=delay)
