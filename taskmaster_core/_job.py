"""The job a handler receives."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ._types import ClaimedJob, Lease

__all__ = ["Job"]


class Job:
    """One run of one job, as handed to a handler (and to middleware).

    ``payload`` is decoded (into the consumer's payload type, if it declared
    one); ``context`` is whatever the consumer was built with — the handler's
    dependencies (a database pool, an API client, …).
    """

    __slots__ = (
        "_claimed",
        "attempt",
        "context",
        "headers",
        "id",
        "max_attempts",
        "payload",
        "priority",
        "queue",
    )

    def __init__(self, claimed: ClaimedJob, payload: Any, context: Any) -> None:
        self._claimed = claimed
        self.id: int = claimed.id
        self.queue: str = claimed.queue
        self.payload: Any = payload
        self.attempt: int = claimed.attempt
        self.max_attempts: int = claimed.max_attempts
        self.priority: int = claimed.priority
        self.headers: dict[str, str] = claimed.headers if claimed.headers is not None else {}
        self.context: Any = context

    @property
    def scheduled_at(self) -> datetime:
        """When the job was due to run (UTC)."""
        return datetime.fromtimestamp(self._claimed.run_at, UTC)

    @property
    def created_at(self) -> datetime:
        return datetime.fromtimestamp(self._claimed.created_at, UTC)

    @property
    def serializer(self) -> str:
        """Name of the serializer the payload was written with."""
        return self._claimed.serializer

    @property
    def raw_payload(self) -> bytes:
        return self._claimed.payload

    @property
    def is_last_attempt(self) -> bool:
        return self.attempt >= self.max_attempts

    @property
    def lease(self) -> Lease:
        return Lease(self._claimed.id, self._claimed.token)

    def __repr__(self) -> str:
        return f"<Job id={self.id} queue={self.queue!r} attempt={self.attempt}/{self.max_attempts}>"
