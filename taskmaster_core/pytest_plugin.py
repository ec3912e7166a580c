"""A pytest plugin for applications that use Taskmaster (entry point ``pytest11``).

Fixtures:

- ``taskmaster_broker`` — an open, migrated, empty broker. The memory broker
  by default; set ``--taskmaster-url``, the ``TASKMASTER_TEST_URL``
  environment variable or the ``taskmaster_url`` ini option to run the same
  tests on Postgres (jobs are deleted before and after each test, so point
  it at a test database).
- ``taskmaster_publisher`` — a ``Publisher`` on that broker.
- ``taskmaster_async_publisher`` — an ``AsyncPublisher`` on that broker.
- ``taskmaster_start_consumer`` — an **async** fixture for async tests run
  by anyio's pytest plugin (``@pytest.mark.anyio``, with the ``asyncio``
  backend): ``consumer = await taskmaster_start_consumer(queue, handler,
  **options)`` starts a consumer on the test's event loop; every consumer it
  started is stopped (``stop_async``) when the test ends.

To run what a test queued, synchronously: ``Consumer(broker, queue,
handler).drain(raise_errors=True)``; in an async test, ``await
Consumer(...).drain_async(raise_errors=True)`` (no threads, deterministic),
or ``await consumer.wait_idle_async()`` for a started consumer.

Why anyio's plugin: it comes with anyio, which FastAPI, Starlette and httpx
already install, and it runs async fixtures and the test on one loop. A
test using ``taskmaster_start_consumer`` without it fails with a message
saying so.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from typing import Any

import pytest

from ._async_publisher import AsyncPublisher
from ._broker import Broker
from ._consumer import Consumer, Handler
from ._plugins import open_broker
from ._publisher import Publisher

__all__ = [
    "StartConsumer",
    "taskmaster_async_publisher",
    "taskmaster_broker",
    "taskmaster_publisher",
    "taskmaster_start_consumer",
]

StartConsumer = Callable[..., Awaitable[Consumer]]
"""``await start(queues, handler, **consumer_options) -> Consumer`` (started)."""

_ENV = "TASKMASTER_TEST_URL"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("taskmaster")
    group.addoption(
        "--taskmaster-url",
        default=None,
        help=f"broker URL for the taskmaster_broker fixture (default: ${_ENV}, "
        "the taskmaster_url ini option, or memory://)",
    )
    parser.addini("taskmaster_url", "broker URL for the taskmaster_broker fixture", default="")


def _url(config: pytest.Config) -> str:
    option = config.getoption("--taskmaster-url")
    ini = config.getini("taskmaster_url")
    return str(option or os.environ.get(_ENV) or ini or "memory://")


@pytest.fixture
def taskmaster_broker(request: pytest.FixtureRequest) -> Iterator[Broker]:
    """An open, migrated broker with no jobs (see the module docstring)."""
    broker = open_broker(_url(request.config))
    broker.open()
    try:
        broker.migrate()
        broker.delete()
        yield broker
        broker.delete()
    finally:
        broker.close()


@pytest.fixture
def taskmaster_publisher(taskmaster_broker: Broker) -> Publisher:
    """A Publisher on ``taskmaster_broker``."""
    return Publisher(taskmaster_broker)


@pytest.fixture
def taskmaster_async_publisher(taskmaster_broker: Broker) -> AsyncPublisher:
    """An AsyncPublisher on ``taskmaster_broker``."""
    return AsyncPublisher(taskmaster_broker)


@pytest.fixture
def _taskmaster_anyio(request: pytest.FixtureRequest) -> str:
    """The anyio backend of the test, or a clear failure without anyio's plugin."""
    if "anyio_backend" not in request.fixturenames:
        pytest.fail(
            "taskmaster_start_consumer is an async fixture run by anyio's pytest plugin: "
            "install anyio and mark the test @pytest.mark.anyio (docs/testing.md)",
            pytrace=False,
        )
    backend = request.getfixturevalue("anyio_backend")
    name = backend if isinstance(backend, str) else backend[0]
    if name != "asyncio":
        pytest.fail(
            f"taskmaster_start_consumer needs the asyncio backend, not {name!r}: "
            "Taskmaster's async consumer runs on asyncio",
            pytrace=False,
        )
    return str(name)


@pytest.fixture
async def taskmaster_start_consumer(
    taskmaster_broker: Broker, _taskmaster_anyio: str
) -> AsyncIterator[StartConsumer]:
    """Starts consumers on ``taskmaster_broker`` on the test's event loop and
    stops them when the test ends (see the module docstring)."""
    started: list[Consumer] = []

    async def start(queues: str | Sequence[str], handler: Handler, **options: Any) -> Consumer:
        consumer = Consumer(taskmaster_broker, queues, handler, **options)
        await consumer.start_async()
        started.append(consumer)
        return consumer

    try:
        yield start
    finally:
        for consumer in reversed(started):
            await consumer.stop_async()
