"""Retry policy: how long to wait before running a failed job again."""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["RetryPolicy"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with jitter.

    The n-th retry (after attempt n failed) waits
    ``min(max_delay, base_delay * factor ** (n - 1))`` seconds, spread by up to
    ``±jitter`` of itself so that a burst of failures does not come back as a
    burst. How many attempts a job gets is the job's ``max_attempts``, set when
    it is put (see ``Publisher``), because a lost worker's job is retried by
    the broker without asking any consumer.
    """

    base_delay: float = 1.0
    factor: float = 2.0
    max_delay: float = 3600.0
    jitter: float = 0.1

    def __post_init__(self) -> None:
        if self.base_delay < 0 or self.max_delay < 0:
            raise ValueError("RetryPolicy delays must be >= 0")
        if self.factor < 1:
            raise ValueError(f"RetryPolicy factor must be >= 1, got {self.factor!r}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"RetryPolicy jitter must be within [0, 1], got {self.jitter!r}")

    def delay(self, attempt: int) -> float:
        """Seconds to wait after ``attempt`` (1-based) failed."""
        exponent = max(0, attempt - 1)
        try:
            raw = self.base_delay * self.factor**exponent
        except OverflowError:
            raw = self.max_delay
        if self.jitter:
            raw *= 1 + random.uniform(-self.jitter, self.jitter)
        return max(0.0, min(self.max_delay, raw))
