from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from taskmaster_memory import MemoryBroker
from tests.harness import FakeClock, Harness

pytest_plugins = ["tests.pg_fixtures", "pytester"]

BROKER_KINDS = ["memory", pytest.param("postgres", marks=pytest.mark.postgres)]

HarnessFactory = Callable[..., Harness]


@pytest.fixture(params=BROKER_KINDS)
def broker_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


@pytest.fixture
def make_harness(broker_kind: str, request: pytest.FixtureRequest) -> Iterator[HarnessFactory]:
    """Build open, migrated brokers of the current kind; options go to the broker."""
    if broker_kind == "postgres":
        factory: HarnessFactory = request.getfixturevalue("make_pg_harness")
        yield factory
        return

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


@pytest.fixture
def harness(make_harness: HarnessFactory) -> Harness:
    return make_harness()


@pytest.fixture
def broker(harness: Harness) -> Any:
    return harness.broker


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}
