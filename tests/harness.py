"""What the contract suite needs from each broker kind.

A :class:`Harness` is an open, migrated broker plus a way to move its clock
forward, so lease and schedule tests never sleep: the memory broker gets a
fake clock; the Postgres broker's rows are shifted back in time instead
(see tests/pg_fixtures.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from taskmaster_core import Broker


class FakeClock:
    """A settable clock, starting at the real time so absolute times make sense."""

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds


@dataclass
class Harness:
    kind: str
    broker: Broker
    advance: Callable[[float], None]
    """Make ``seconds`` pass for the broker: leases expire, scheduled jobs fall due."""
