from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from taskmaster_core.testing import FakeClock, Harness, HarnessFactory
from taskmaster_memory import MemoryBroker

pytest_plugins = ["tests.pg_fixtures", "pytester"]


@pytest.fixture
def make_memory_harness() -> Iterator[HarnessFactory]:
    """A factory of memory-broker harnesses, ``(**broker_options) -> Harness``,
    each broker on a FakeClock; the contract suite's memory run uses it."""
    opened: list[MemoryBroker] = []

    def make(**options: Any) -> Harness:
        clock = FakeClock()
        broker = MemoryBroker(clock=clock, **options)
        broker.open()
        broker.migrate()
        opened.append(broker)
        return Harness(kind="memory", broker=broker, advance=clock.advance)

    yield make
    for broker in opened:
        broker.close()


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}
