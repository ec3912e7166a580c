"""What a handler returns: ``ACK``, ``REJECT`` (or ``Reject(reason)``) or ``Retry``.

Raising an exception means "retry per the retry policy"; returning anything
else is a programming error that fails the job with a message saying so.
"""

from __future__ import annotations

from typing import Final, final

__all__ = ["ACK", "REJECT", "Ack", "Outcome", "Reject", "Retry"]


@final
class Ack:
    """The job is done: delete it (or mark it done in keep-done mode)."""

    __slots__ = ()
    _instance: Ack | None = None

    def __new__(cls) -> Ack:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "ACK"


@final
class Reject:
    """The job failed for good: mark it ``failed`` now, without retrying."""

    __slots__ = ("reason",)

    def __init__(self, reason: str = "rejected by handler") -> None:
        self.reason = reason

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Reject) and other.reason == self.reason

    def __hash__(self) -> int:
        return hash((Reject, self.reason))

    def __repr__(self) -> str:
        return "REJECT" if self.reason == "rejected by handler" else f"Reject({self.reason!r})"


@final
class Retry:
    """Run the job again later. Counts as an attempt; once attempts are used up
    the job fails. ``delay=None`` uses the consumer's retry policy backoff."""

    __slots__ = ("delay", "reason")

    def __init__(self, delay: float | None = None, reason: str = "retry requested") -> None:
        if delay is not None and delay < 0:
            raise ValueError(f"Retry delay must be >= 0 seconds, got {delay!r}")
        self.delay = delay
        self.reason = reason

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Retry) and other.delay == self.delay and other.reason == self.reason
        )

    def __hash__(self) -> int:
        return hash((Retry, self.delay, self.reason))

    def __repr__(self) -> str:
        return f"Retry(delay={self.delay!r}, reason={self.reason!r})"


Outcome = Ack | Reject | Retry
"""Everything a handler may return."""

ACK: Final = Ack()
REJECT: Final = Reject()
