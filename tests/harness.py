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
    """Real time plus an offset that tests push forward, so the memory broker
    behaves like Postgres under ``advance``: time flows, and can jump."""

    def __init__(self) -> None:
        self._offset = 0.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._offset += seconds


@dataclass
class Harness:
    kind: str
    broker: Broker
    advance: Callable[[float], None]
    """Make ``seconds`` pass for the broker: leases expire, scheduled jobs fall due."""
