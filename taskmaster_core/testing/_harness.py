"""What the contract suite needs from a broker: a :class:`Harness`.

A harness is an open, migrated broker plus a way to move its clock forward,
so lease and schedule tests never sleep. The memory broker gets a
:class:`FakeClock`; the Postgres broker's rows are shifted back in time
instead. A :data:`HarnessFactory` builds harnesses, passing keyword options
to the broker's constructor (the suite asks for ``keep_done=True``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .._broker import Broker
from .._consumer import Consumer

__all__ = ["FakeClock", "Harness", "HarnessFactory", "wait_until"]


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
    """A short name of the broker kind, for messages (``"memory"``, ``"postgres"``)."""
    broker: Broker
    """Open and migrated, with no jobs."""
    advance: Callable[[float], None]
    """Make ``seconds`` pass for the broker: leases expire, scheduled jobs fall due."""


HarnessFactory = Callable[..., Harness]
"""``(**broker_options) -> Harness``: a new open, migrated broker on every call."""


def wait_until(
    predicate: Callable[[], bool],
    timeout: float = 15.0,
    interval: float = 0.005,
    *,
    consumers: Sequence[Consumer] = (),
) -> None:
    """Wait for ``predicate()`` to become true, or fail after ``timeout``
    seconds; fail at once, with its error, if one of ``consumers`` died (a
    broker raising something unexpected kills a consumer: waiting on would
    only hide why)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        for consumer in consumers:
            if not consumer.healthy:
                raise AssertionError(
                    f"{consumer.name} died of {consumer.error!r} (see its logged traceback)"
                ) from consumer.error
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {predicate}")
        time.sleep(interval)
